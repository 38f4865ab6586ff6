"""Inhomogeneous Poisson input spike trains on a 1 ms grid.

Rates vary slowly in time and across the dendritic tree so that inputs arrive in
branch-correlated waves (what drives NMDA nonlinearities) and simulations differ in
overall drive. Each input spikes at most once per 1 ms bin (Bernoulli with p = rate·1 ms),
so a dense view is exactly 0/1. Everything is drawn from the Generator passed in, so one
seed gives one set of trains.
"""

from __future__ import annotations

import numpy as np

from .spec import StimulusSpec

MAX_SPIKE_PROBABILITY = 0.5  # per input per ms bin


def smooth_noise(rng: np.random.Generator, n: int, length: int, width_ms: float) -> np.ndarray:
    """``n`` independent unit-variance Gaussian processes of ``length`` ms, smoothed by a
    Gaussian kernel of SD ``width_ms`` (white noise convolved, 'valid' part only)."""
    half = int(np.ceil(4 * width_ms))
    taps = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / width_ms) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))  # unit output variance
    white = rng.standard_normal((n, length + 2 * half))
    size = 1 << int(np.ceil(np.log2(white.shape[1] + kernel.size - 1)))
    spectrum = np.fft.rfft(white, size, axis=1) * np.fft.rfft(kernel, size)[None, :]
    full = np.fft.irfft(spectrum, size, axis=1)
    return full[:, 2 * half : 2 * half + length]


def _lognormal(rng: np.random.Generator, sd: float, shape) -> np.ndarray:
    """Mean-one log-normal factors."""
    return np.exp(sd * rng.standard_normal(shape) - 0.5 * sd**2)


def log_modulation(
    rng: np.random.Generator, spec: StimulusSpec, n_branches: int, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised slow log-rate fluctuations ``[n_branches, length]`` for excitation and
    inhibition: a tree-wide part plus a per-branch part; inhibition partly follows excitation."""
    noise = smooth_noise(rng, 2 * (n_branches + 1), length, spec.rate_tau_ms)
    shared, own = np.sqrt(spec.shared_fraction), np.sqrt(1.0 - spec.shared_fraction)
    exc = shared * noise[0] + own * noise[1 : n_branches + 1]
    inh_own = shared * noise[n_branches + 1] + own * noise[n_branches + 2 :]
    c = spec.ei_correlation
    inh = np.sqrt(c) * exc + np.sqrt(1.0 - c) * inh_own
    return exc, inh


def input_rates(
    rng: np.random.Generator, spec: StimulusSpec, input_kind: np.ndarray, input_group: np.ndarray, length: int
) -> np.ndarray:
    """Instantaneous rates (Hz) ``[n_inputs, length]`` at 1 ms resolution. ``spec.rate_scale``
    must be set (calibrated or given): the per-simulation scale is log-uniform in it."""
    if spec.rate_scale is None:
        raise ValueError("the stimulus' rate_scale must be calibrated (or given) before drawing rates")
    branches, branch_of = np.unique(input_group, return_inverse=True)
    n_branches, n_inputs = branches.size, input_kind.size
    exc_mod, inh_mod = log_modulation(rng, spec, n_branches, length)
    low, high = spec.rate_scale
    scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    sd = spec.temporal_sd
    rates = np.empty((n_inputs, length), dtype=np.float64)
    for kind, base, mod in ((0, spec.exc_rate_hz, exc_mod), (1, spec.inh_rate_hz, inh_mod)):
        rows = np.flatnonzero(input_kind == kind)
        branch_factor = _lognormal(rng, spec.branch_sd, n_branches)
        input_factor = _lognormal(rng, spec.input_sd, rows.size)
        temporal = np.exp(sd * mod - 0.5 * sd**2)  # [n_branches, length], mean one
        static = base * scale * branch_factor[branch_of[rows]] * input_factor
        block = static[:, None] * temporal[branch_of[rows]]
        if spec.normalise_drive and block.size:
            # The log-normal factors make the realised total drive of one simulation
            # vary several-fold (few branches, few slow fluctuations per simulation),
            # which left many simulations silent. Rescale so the realised mean rate is
            # exactly base × scale; the spatial and temporal pattern is kept.
            block *= base * scale / max(float(block.mean()), 1e-12)
        rates[rows] = block
    return np.minimum(rates, spec.max_rate_hz)


def spike_trains(
    rng: np.random.Generator, spec: StimulusSpec, input_kind: np.ndarray, input_group: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse spike trains: (input index, ms bin) as int32 arrays, sorted by input then time."""
    rates = input_rates(rng, spec, input_kind, input_group, length)
    p = np.minimum(rates * 1e-3, MAX_SPIKE_PROBABILITY)
    index, ms = np.nonzero(rng.random(p.shape) < p)
    return index.astype(np.int32), ms.astype(np.int32)
