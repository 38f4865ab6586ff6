"""Calibrate a cell's input drive so that its simulations fire as the field's anchors do.

The output rate decides what a 1 ms spike AUC means, and the field scores cells firing at
about 1 Hz, so the drive is calibrated per cell to a target mean rate (``mean_rate_hz``)
with a spread of rates across simulations (``output_rate_hz``). How strongly a cell
answers its drive is steep and different for every cell, so this is measured, not
guessed, in two stages:

1. *The curve.* Probe simulations on a doubling grid of drive levels give the cell's
   mean output rate per level (the same probe stimuli at every level, so the curve is
   smooth); the levels at which it fires at ``output_rate_hz[0]`` and ``[1]`` (log-log
   interpolation) bound the drive range and so set its width.
2. *The centring.* The curve is least precise at low rates (a 1.5 s probe at 1 Hz holds
   one or two spikes, and the grid is coarse where the curve is steep), and the mean is
   what the protocol promises, so rounds of ``calibration_check`` probes drawn like the
   dataset (drive levels spread evenly over the range, in log) measure its mean rate and
   the whole range is shifted, keeping its width, by secant steps in log-log until that
   mean is within ``calibration_tolerance`` of ``mean_rate_hz`` (at most
   ``CENTRING_ROUNDS`` rounds; the closest round is kept, with a warning if it missed).
   These probes are whole dataset-like simulations: the bundled cells fire ~25% less in
   the first 2 s after the discard than later, and at ~1 Hz a cell's rate is heavy-tailed
   across simulations (most are nearly silent, a few carry the spikes), so probe time is
   what the mean's precision costs.

Every probe is a simulation drawn exactly like the dataset's (a curve probe only its
first 1.5 s): each simulation's drive is normalised over its whole length, so a short
stimulus keeps less of the slow fluctuations that make spikes (probes made 2.5 s long
read 1.06 Hz for a 6 s dataset that fired at 1.67 Hz). Alongside the first probes runs one simulation without
any input: a cell that fires there fires on its own, and no drive can set its rate.
When no drive fits, the error names the curve's shape (never fires, saturates, falls as
the drive rises, fires too fast, a soma held depolarised) and the knobs that apply to
this cell, and the measured curve is kept. The result depends only on the cell, the
stimulus, the simulation length, the discard and the seed; it is cached beside the
datasets so a dataset that grows, or another split of the same cell, reuses it.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import storage, worker
from .errors import CalibrationError, SimulatorError
from .spec import SimulationSpec

PROBE_MS = 1500
"""Recorded length of one curve probe (after the discard): the start of a dataset-like simulation."""
CENTRING_ROUNDS = 5
CALIBRATION_VERSION = 3
"""Bump when the calibration's method changes, so cached calibrations are measured anew."""
FIRST_LEVELS = (0.25, 0.5, 1.0, 2.0, 4.0)
LIMITS = (1 / 64, 64.0)
"""The drive range searched, relative to the stimulus' nominal rates."""


def probe_seed(seed: int, k: int) -> int:
    """Seed of probe stimulus ``k``: the same at every drive level."""
    return int(np.random.SeedSequence([seed, 0xCA1B, k]).generate_state(1, np.uint64)[0])


def calibration_key(spec: SimulationSpec) -> str:
    """What the calibration depends on, hashed: the dataset's hash without the count and
    split of simulations, which the probes do not depend on (their length they do: a
    probe is the start of a simulation drawn like the dataset's)."""
    return spec.config_hash(ignore=("n_simulations", "split"), probe_ms=PROBE_MS,
                            calibration_version=CALIBRATION_VERSION)


def _interpolate(levels: np.ndarray, rates: np.ndarray, target: float) -> float:
    """The drive level at which the (made monotone) rate curve crosses ``target``, log-log."""
    y = np.log(np.maximum.accumulate(rates) + 0.05)
    y = y + 1e-9 * np.arange(y.size)  # strictly increasing for np.interp
    return float(np.exp(np.interp(np.log(target + 0.05), y, np.log(levels))))


def _midpoints(rates: dict[float, float], targets: tuple[float, float]) -> list[float]:
    """Geometric midpoints of the grid intervals in which the rate curve crosses a target."""
    levels = sorted(rates)
    curve = np.maximum.accumulate([rates[v] for v in levels])
    found = set()
    for target in targets:
        for k in range(len(levels) - 1):
            if curve[k] < target <= curve[k + 1]:
                found.add(float(np.sqrt(levels[k] * levels[k + 1])))
                break
    return sorted(found - set(levels))


def calibrate(
    spec: SimulationSpec,
    setup: worker.WorkerSetup,
    pool: Executor,
    on_probe: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Probe the cell and return the calibration record (``rate_scale`` and its evidence)."""
    started = time.perf_counter()
    low_hz, high_hz = spec.stimulus.output_rate_hz
    n_probes = spec.stimulus.calibration_probes
    # a probe is the start of a dataset-like simulation, never shorter than PROBE_MS
    setup = replace(setup, duration_ms=max(spec.duration_ms, spec.discard_ms + PROBE_MS))
    probe_ms = spec.discard_ms + PROBE_MS
    probe_s = PROBE_MS / 1000.0
    probe_setup = replace(setup, duration_ms=probe_ms)  # for the probe without input
    rates: dict[float, float] = {}
    silent: dict[float, float] = {}
    held: dict[float, float] = {}  # threshold crossings without a repolarisation, per s: a depolarised soma
    done = 0

    def measure(levels: list[float]) -> None:
        nonlocal done
        if not levels:
            return
        futures = {}
        for level in levels:
            stim = setup.stimulus.model_copy(update={"rate_scale": (level, level)})
            level_setup = replace(setup, stimulus=stim)
            futures[level] = [pool.submit(worker.count_spikes, level_setup, probe_seed(spec.seed, k), probe_ms)
                              for k in range(n_probes)]
        total = done + sum(len(f) for f in futures.values())
        for level, fs in futures.items():
            counts = []
            for f in fs:
                counts.append(f.result())
                done += 1
                if on_probe is not None:
                    on_probe(done, total)
            spikes, blocked = np.asarray(counts).T
            rates[level] = float(np.mean(spikes)) / probe_s
            silent[level] = float(np.mean(spikes == 0))
            held[level] = float(np.mean(blocked)) / probe_s

    quiet = pool.submit(worker.spontaneous_spikes, probe_setup)  # alongside the first probes
    measure(list(FIRST_LEVELS))
    spontaneous = quiet.result()
    if spontaneous:
        raise SimulatorError(
            f"{_who(spec)} fires {spontaneous} spikes in {probe_s:g} s without any input, so no drive "
            "can set its rate: make it rest below CellModel.spike_threshold without input (check v_init, leak "
            "reversal and channel densities; no current clamp left in keep)"
        )
    while max(rates.values()) < high_hz and max(rates) < LIMITS[1] and rates[max(rates)] >= max(rates.values()):
        measure([max(rates) * 2, max(rates) * 4])  # (a cell whose rate already falls with more drive stops here)
    while min(rates.values()) > low_hz and min(rates) > LIMITS[0]:
        measure([min(rates) / 2, min(rates) / 4])
    measure(_midpoints(rates, (low_hz, high_hz)))  # halve the step where the targets are crossed
    if max(rates.values()) < low_hz and rates[max(rates)] < max(rates.values()) and max(rates) < LIMITS[1]:
        measure([max(rates) * 4])  # a failure to explain: does the rate keep falling past its peak?
    levels = np.array(sorted(rates))
    curve = np.array([rates[level] for level in levels])
    evidence = {
        "output_rate_hz": [low_hz, high_hz],
        "levels": [float(v) for v in levels],
        "mean_rate_hz": [round(rates[v], 3) for v in levels],
        "silent_fraction": [silent[v] for v in levels],
        "held_hz": [round(held[v], 3) for v in levels],
        "probes_per_level": n_probes,
        "probe_ms": PROBE_MS,
    }
    if curve.max() < low_hz or curve.min() > high_hz:
        knobs = pool.submit(worker.synapse_knobs, probe_setup).result()
        raise CalibrationError(_failure(spec, levels, curve, evidence["held_hz"], knobs), {**evidence, "failed": True})
    # A cell that saturates below the high target (more drive, more inhibition too) gets
    # the drive of its peak rate as the high end, never the far end of the grid.
    peak = float(levels[int(np.argmax(curve))])
    low = min(_interpolate(levels, curve, low_hz), peak)
    high = max(min(_interpolate(levels, curve, high_hz), peak), low)
    centring = None
    if spec.stimulus.mean_rate_hz is not None:
        low, high, centring = _centre(spec, setup, pool, (low, high), on_probe)
    return {
        "rate_scale": [round(low, 5), round(high, 5)],
        "centring": centring,
        **evidence,
        "wall_s": round(time.perf_counter() - started, 2),
    }


def _curve_text(levels: np.ndarray, curve: np.ndarray) -> str:
    return ", ".join(f"{level:.3g}× {rate:.2f} Hz" for level, rate in zip(levels, curve))


def _failure(spec: SimulationSpec, levels: np.ndarray, curve: np.ndarray, held_hz: list[float], knobs: dict) -> str:
    """Why no drive range fits, by the curve's shape, with only the knobs that apply to
    this cell (its synapse_factory or CellModel's weights; the stimulus; the targets)."""
    stim = spec.stimulus
    low_hz, high_hz = stim.output_rate_hz
    own = "the weights your synapse_factory returns (CellModel's ampa/nmda/gaba weights are unused with one)"
    stronger = own if knobs["factory"] else "CellModel ampa_weight/nmda_weight (µS) or more sites"
    weaker_inh = own if knobs["factory"] else f"a lower CellModel gaba_weight (now {knobs['gaba_weight']:g} µS)"
    targets = f"[simulator.stimulus] output_rate_hz (now [{low_hz:g}, {high_hz:g}]) and mean_rate_hz"
    peak_at = int(np.argmax(curve))
    measured = f"measured output rate at drive × nominal input rates: {_curve_text(levels, curve)}"
    if curve.min() > high_hz:
        shape = (f"fires at {curve.min():.1f} Hz even at {levels.min():g}× the nominal input rates, above the "
                 f"calibration's highest target of {high_hz:g} Hz")
        advice = f"make its excitation weaker ({stronger}) or its soma less excitable, or raise {targets}"
    elif curve.max() == 0:
        shape = (f"never fires, from {levels.min():g}× to {levels.max():g}× the nominal input rates (target "
                 f"{low_hz:g}–{high_hz:g} Hz)")
        advice = (f"make its excitation stronger ({stronger}), or check that its spikes cross CellModel.spike_threshold "
                  f"({knobs['spike_threshold']:g} mV) at soma(0.5)")
    elif peak_at < curve.size - 1 and curve[-1] < 0.5 * curve[peak_at]:
        shape = (f"fires at most {curve.max():.2f} Hz, below the calibration's lowest target of {low_hz:g} Hz, and "
                 f"its rate falls as the drive rises ({curve[peak_at]:.2f} Hz at {levels[peak_at]:g}×, "
                 f"{curve[-1]:.2f} Hz at {levels[-1]:g}×): inhibition grows with excitation and holds the soma down")
        advice = (f"give inhibition a smaller share: [simulator.stimulus] inh_rate_hz below exc_rate_hz (now "
                  f"{stim.inh_rate_hz:g} and {stim.exc_rate_hz:g} Hz) or a lower ei_correlation (now "
                  f"{stim.ei_correlation:g}), or {weaker_inh}; or lower {targets}")
    else:
        shape = (f"fires at most {curve.max():.2f} Hz even at {levels[peak_at]:g}× the nominal input rates, below the "
                 f"calibration's lowest target of {low_hz:g} Hz")
        advice = (f"make its excitation stronger ({stronger}) or its inhibition weaker (inh_rate_hz, now "
                  f"{stim.inh_rate_hz:g} Hz), or check that its spikes cross CellModel.spike_threshold "
                  f"({knobs['spike_threshold']:g} mV) at soma(0.5); or lower {targets}")
    return f"{_who(spec)} {shape}{_blocked(levels, held_hz)}: {advice} ({measured})"


def _blocked(levels, held_hz) -> str:
    """Where the soma crossed spike_threshold without repolarising (depolarisation block):
    neither firing nor silence, so said apart."""
    hits = [(level, rate) for level, rate in zip(levels, held_hz) if rate > 0]
    if not hits:
        return ""
    level, rate = hits[0]
    return (f"; from {level:g}× its soma is held depolarised ({rate:.1f} crossings of spike_threshold per s without "
            "repolarising below CellModel.spike_reset: depolarisation block, not counted as spikes)")


def _centre(
    spec: SimulationSpec,
    setup: worker.WorkerSetup,
    pool: Executor,
    drive: tuple[float, float],
    on_probe: Callable[[int, int], None] | None,
) -> tuple[float, float, dict[str, Any]]:
    """Shift the drive range (width kept) until probes drawn like the dataset fire at
    ``mean_rate_hz`` on average: (low, high, the record of every round)."""
    stim = spec.stimulus
    target, n = float(stim.mean_rate_hz), stim.calibration_check
    low, high = drive
    width = high / low
    # how steeply the rate follows the drive across the range (log-log), for the first shift;
    # later shifts use the slope the rounds themselves measured
    spread = np.log(stim.output_rate_hz[1] / stim.output_rate_hz[0])
    slope = float(np.clip(spread / np.log(width), 0.5, 8.0)) if width > 1 and spread > 0 else 1.0
    fractions = (np.arange(n) + 0.5) / n  # the dataset's log-uniform draw, stratified
    check_s = (setup.duration_ms - spec.discard_ms) / 1000.0  # whole simulations, as long as the dataset's
    rounds: list[dict[str, float]] = []
    shift = 1.0

    def close(mean: float) -> bool:
        return abs(mean / target - 1.0) <= stim.calibration_tolerance

    for r in range(CENTRING_ROUNDS):
        futures = []
        for k, u in enumerate(fractions):
            level = float(low * shift * width**u)
            stimulus = setup.stimulus.model_copy(update={"rate_scale": (level, level)})
            futures.append(pool.submit(worker.count_spikes, replace(setup, stimulus=stimulus),
                                       probe_seed(spec.seed, 1000 + k), setup.duration_ms))
        counts = []
        for f in futures:
            counts.append(f.result()[0])
            if on_probe is not None:
                on_probe(len(counts), n)
        mean = float(np.mean(counts)) / check_s
        rounds.append({"shift": round(shift, 5), "mean_rate_hz": round(mean, 4),
                       "silent_fraction": float(np.mean(np.asarray(counts) == 0))})
        if close(mean) or r == CENTRING_ROUNDS - 1:
            break
        fired = [(np.log(row["shift"]), np.log(row["mean_rate_hz"])) for row in rounds if row["mean_rate_hz"] > 0]
        if len(fired) >= 2 and fired[-1][0] != fired[-2][0]:  # secant: the slope the rounds measured
            slope = float(np.clip((fired[-1][1] - fired[-2][1]) / (fired[-1][0] - fired[-2][0]), 0.5, 8.0))
        shift *= 4.0 if mean == 0 else float(np.clip((target / mean) ** (1.0 / slope), 0.25, 4.0))
    best = min(rounds, key=lambda row: abs(np.log(max(row["mean_rate_hz"], 1e-3) / target)))
    record = {"target_hz": target, "tolerance": stim.calibration_tolerance, "probes": n,
              "probe_ms": round(check_s * 1000),
              "rounds": rounds, "mean_rate_hz": best["mean_rate_hz"], "silent_fraction": best["silent_fraction"],
              "within_tolerance": close(best["mean_rate_hz"])}
    return low * best["shift"], high * best["shift"], record


def describe(record: dict[str, Any]) -> str:
    """The calibration as a user reads it: the measured rate-vs-drive curve and the centring."""
    curve = _curve_text(record["levels"], record["mean_rate_hz"])
    low, high = record["rate_scale"]
    text = (f"calibration (output rate at drive × nominal, {record['probes_per_level']} probes each): {curve}"
            + _blocked(record["levels"], record.get("held_hz", [])))
    centring = record.get("centring")
    if centring:
        rounds = "; ".join(f"×{row['shift']:.3g} → {row['mean_rate_hz']:.2f} Hz" for row in centring["rounds"])
        text += (f"\ncentred on {centring['target_hz']:g} Hz ({centring['probes']} probes of "
                 f"{centring['probe_ms'] / 1000:g} s drawn like the dataset per round: {rounds}): "
                 f"drive {low:.3g}–{high:.3g}× nominal, probes' mean {centring['mean_rate_hz']:.2f} Hz")
        if not centring.get("within_tolerance", True):
            text += (f"\nwarning: after {len(centring['rounds'])} rounds the probes' mean is still more than "
                     f"{100 * centring['tolerance']:.0f}% off {centring['target_hz']:g} Hz; the closest round is used")
    else:
        text += f"\ndrive {low:.3g}–{high:.3g}× nominal"
    return text


def _who(spec: SimulationSpec) -> str:
    """The cell as the user named it: the builder for a custom model."""
    return f"custom model builder {spec.custom.builder}" if spec.custom is not None else f"model {spec.model!r}"


def cached_calibration(cache_dir: Path, spec: SimulationSpec) -> tuple[Path, dict[str, Any] | None]:
    """(file, its record or None): the calibration of this cell and stimulus, if made before."""
    path = Path(cache_dir) / "calibrations" / f"{calibration_key(spec)}.json"
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError):
        return path, None


def save_calibration(path: Path, record: dict[str, Any]) -> None:
    storage.write_atomic(path, json.dumps(record, indent=1).encode())
