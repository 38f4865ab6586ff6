"""Accuracy metrics of a surrogate against NEURON ground truth, with intervals.

Voltage is compared with spikes clipped at a fixed ceiling (as in Beniaguev et al.),
on the raw prediction. The published code also z-scores the prediction to the
truth's mean and SD first; that calibrated figure is reported separately as
``voltage_ev_calibrated`` so the two are never confused.

Intervals come from a cluster bootstrap that resamples whole simulations (1 ms bins
are autocorrelated, so resampling bins would make intervals far too narrow). Every
metric is computed from per-simulation weights, so the point estimate (all weights
one) and each bootstrap replicate (multinomial weights) go through the same code, and
a replicate costs one pass over the sorted scores instead of a new sort.

A spike AUC depends on how often the cell fires (at 18 Hz most silent bins sit a few
ms from a spike; at 1 Hz most are far from any), so AUCs of cells or datasets firing at
different rates do not compare. As Aizenbud et al. (PNAS 2026) do, the spike AUC is also
given on a view of the split *normalised to a mean output rate of exactly 1 Hz*
(``spike_auc_1hz``): whole simulations are reweighted, by the smallest change from
equal weights (minimum Kullback–Leibler divergence, i.e. weights ∝ exp(λ·rate)) that
makes their weighted mean rate 1 Hz. The Functional Complexity Index ``fci`` is
log10(1000·(1 − AUC)) / log10(1000·(1 − 0.9)) of that AUC: 1 at 0.9, 0 at 0.999. Both
are recomputed inside every bootstrap replicate (the reweighting is part of the
estimate), and are NaN when 1 Hz lies outside the split's per-simulation rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOLTAGE_CEILING_MV = -55.0
FALSE_POSITIVE_RATE = 0.001
"""Operating point of ``spike_tpr``: Beniaguev et al.'s second figure of merit."""
NORMALISED_RATE_HZ = 1.0
"""Mean output rate of the view ``spike_auc_1hz`` and ``fci`` are scored on."""
FCI_FLOOR = 1e-6
"""1 − AUC below this counts as this (FCI −1.5), so a perfect score stays a finite number."""


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str

    def passes(self, value: float, threshold: float) -> bool:
        return value >= threshold if self.higher_is_better else value <= threshold

    def better(self, a: float, b: float) -> bool:
        """True when a is strictly better than b."""
        return a > b if self.higher_is_better else a < b

    def bound(self, interval: tuple[float, float]) -> float:
        """The pessimistic end of an interval: what a confirmed pass must clear."""
        return interval[0] if self.higher_is_better else interval[1]


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("spike_auc", True, "ROC AUC of output-spike prediction at 1 ms bins"),
        Metric("spike_auc_1hz", True, "spike AUC on the split reweighted (whole simulations) to a mean rate of 1 Hz"),
        Metric("fci", False, "Functional Complexity Index of spike_auc_1hz: log10(1000(1-AUC))/2, 1 at 0.9, 0 at 0.999"),
        Metric("spike_tpr", True, "true-positive rate of spike prediction at 0.1% false positives"),
        Metric("voltage_ev", True, "explained variance of the clipped somatic voltage (raw prediction)"),
        Metric("voltage_ev_calibrated", True, "explained variance after z-scoring the prediction to the truth"),
        Metric("voltage_rmse", False, "RMSE of the clipped somatic voltage, mV (raw prediction)"),
    )
}


def clip_voltage(voltage: np.ndarray) -> np.ndarray:
    return np.minimum(voltage, VOLTAGE_CEILING_MV)


def fci(auc: float) -> float:
    """Functional Complexity Index of a spike AUC (Aizenbud et al., PNAS 2026)."""
    if auc != auc:
        return float("nan")
    return float(np.log10(1000.0 * max(1.0 - auc, FCI_FLOOR)) / np.log10(1000.0 * (1.0 - 0.9)))


def rate_normalised(weights: np.ndarray, rates_hz: np.ndarray, target_hz: float = NORMALISED_RATE_HZ) -> np.ndarray | None:
    """Weights ``w_i·exp(λ·r_i)`` whose weighted mean of ``rates_hz`` is exactly ``target_hz``:
    of all reweightings of whole simulations that reach that mean, the closest to ``weights``
    (minimum KL divergence). None when ``target_hz`` is outside the rates present."""
    w = np.asarray(weights, dtype=np.float64)
    r = np.asarray(rates_hz, dtype=np.float64)
    present = w > 0
    if not present.any():
        return None
    low, high = r[present].min(), r[present].max()
    if not low <= target_hz <= high:
        return None
    if high == low:
        return w.copy()
    span = high - low
    log_w = np.log(np.where(present, w, 1.0))

    def tilted(lam: float) -> np.ndarray:
        e = np.where(present, log_w + lam * (r - target_hz), -np.inf)
        return np.exp(e - e.max())

    def excess(lam: float) -> float:
        p = tilted(lam)
        return float(p @ (r - target_hz) / p.sum())

    from scipy.optimize import brentq  # here: `report` reads stored figures and never needs SciPy

    limit = 700.0 / span  # exp stays finite; beyond it the weight sits on the extreme rates alone
    if excess(-limit) > 0 or excess(limit) < 0:
        return None
    lam = brentq(excess, -limit, limit, xtol=1e-12, rtol=1e-12)
    p = tilted(lam)
    return p * (w.sum() / p.sum())


class Scorer:
    """The metrics of one prediction of whole simulations, for any weighting of them.

    Arrays are ``[n_simulations, T]``: spike probability, 0/1 spikes, predicted voltage
    (mV) and clipped true voltage.

    Weighting whole simulations makes the AUC a quadratic form: with ``C[i, j]`` the
    number of (spike bin of simulation i, silent bin of simulation j) pairs the network
    orders rightly (ties count one half), AUC(w) = wᵀCw / ((w·P)(w·N)) for P and N the
    spike and silent bins per simulation. ``C`` is counted once; a bootstrap replicate
    then costs O(n_simulations²), not a pass over every bin.
    """

    def __init__(self, spike_prob: np.ndarray, spike_true: np.ndarray, v_pred: np.ndarray, v_true: np.ndarray):
        spike_prob, spike_true, v_pred, v_true = (np.atleast_2d(a) for a in (spike_prob, spike_true, v_pred, v_true))
        n_sims, length = spike_prob.shape
        self.n_sims = n_sims
        score = spike_prob.astype(np.float64)
        label = spike_true.astype(bool)
        self.spikes = label.sum(1).astype(np.float64)
        """Output spikes (1 ms bins with one) per simulation."""
        self.rates_hz = self.spikes / (length / 1000.0)
        """Output rate of each simulation over the scored bins."""
        self._pos, self._neg = self.spikes, length - self.spikes
        pos_score, pos_sim = score[label], np.nonzero(label)[0]
        self._pairs = np.zeros((n_sims, n_sims))
        for j in range(n_sims):
            silent = np.sort(score[j][~label[j]])
            below = np.searchsorted(silent, pos_score, "left")
            ties = np.searchsorted(silent, pos_score, "right") - below
            self._pairs[:, j] = np.bincount(pos_sim, weights=below + 0.5 * ties, minlength=n_sims)
        # spike_tpr: the bins above the 0.1%-false-positive threshold, every spike bin and
        # the highest-scoring silent ones, sorted by score, high first
        silent_score, silent_sim = score[~label], np.nonzero(~label)[0]
        top = np.argsort(-silent_score, kind="stable")[: max(100, int(np.ceil(20 * FALSE_POSITIVE_RATE * silent_score.size)))]
        self._tpr_floor = silent_score[top[-1]] if top.size else np.inf
        keep_score = np.concatenate([pos_score, silent_score[top]])
        order = np.argsort(-keep_score, kind="stable")
        self._tpr_score = keep_score[order]
        self._tpr_sim = np.concatenate([pos_sim, silent_sim[top]])[order]
        self._tpr_label = np.concatenate([np.ones(pos_score.size, bool), np.zeros(top.size, bool)])[order]
        self._all = (score, label)  # for the rare weighting the top silent bins do not cover
        # voltage: per-simulation sufficient statistics
        p = v_pred.astype(np.float64)
        t = v_true.astype(np.float64)
        self._v = np.stack([
            np.full(n_sims, p.shape[1], dtype=np.float64),
            t.sum(1), (t * t).sum(1), p.sum(1), (p * p).sum(1), (p * t).sum(1),
        ], axis=1)

    def metrics(self, weights: np.ndarray | None = None) -> dict[str, float]:
        """All metrics with simulation ``i`` counted ``weights[i]`` times (default once)."""
        w_sim = np.ones(self.n_sims) if weights is None else np.asarray(weights, dtype=np.float64)
        w_1hz = rate_normalised(w_sim, self.rates_hz)
        auc_1hz = float("nan") if w_1hz is None else self._auc(w_1hz)
        return {"spike_auc": self._auc(w_sim), "spike_auc_1hz": auc_1hz, "fci": fci(auc_1hz),
                "spike_tpr": self._tpr(w_sim), **self._voltage(w_sim)}

    def mean_rate_hz(self) -> float:
        """Mean output rate of the scored simulations (what the pooled AUC was measured at)."""
        return float(self.rates_hz.mean()) if self.n_sims else float("nan")

    def _auc(self, w_sim: np.ndarray) -> float:
        total_pos, total_neg = w_sim @ self._pos, w_sim @ self._neg
        if total_pos <= 0 or total_neg <= 0:
            return float("nan")  # undefined without both classes
        return float(w_sim @ self._pairs @ w_sim / (total_pos * total_neg))

    def _tpr(self, w_sim: np.ndarray) -> float:
        """True-positive rate at the highest threshold that lets through at most
        FALSE_POSITIVE_RATE of the (weighted) silent bins."""
        total_pos, total_neg = w_sim @ self._pos, w_sim @ self._neg
        if total_pos <= 0 or total_neg <= 0:
            return float("nan")
        score, sim, label = self._tpr_score, self._tpr_sim, self._tpr_label
        w = w_sim[sim]
        if np.sum(np.where(label, 0.0, w)) <= FALSE_POSITIVE_RATE * total_neg:
            score, label = self._all  # the kept silent bins are too few under this weighting
            order = np.argsort(-score.ravel(), kind="stable")
            sim = np.repeat(np.arange(self.n_sims), score.shape[1])[order]
            score, label, w = score.ravel()[order], label.ravel()[order], w_sim[sim]
        # the threshold sits between groups of equal scores
        last_of_group = np.ones(score.size, dtype=bool)
        last_of_group[:-1] = score[1:] != score[:-1]
        neg_above = np.cumsum(np.where(label, 0.0, w))[last_of_group]
        pos_above = np.cumsum(np.where(label, w, 0.0))[last_of_group]
        allowed = neg_above <= FALSE_POSITIVE_RATE * total_neg
        return float(pos_above[allowed].max() / total_pos) if allowed.any() else 0.0

    def _voltage(self, w_sim: np.ndarray) -> dict[str, float]:
        n, st, stt, sp, spp, spt = (w_sim @ self._v).tolist()
        mean_t, mean_p = st / n, sp / n
        var_t = max(stt / n - mean_t**2, 1e-12)
        var_p = max(spp / n - mean_p**2, 0.0)
        cov = spt / n - mean_p * mean_t
        mse = (spp - 2 * spt + stt) / n
        var_err = max(mse - (mean_p - mean_t) ** 2, 0.0)
        sd_p = np.sqrt(var_p) or 1.0
        # calibrated: prediction z-scored to the truth's mean and SD
        var_cal_err = var_t * (var_p / sd_p**2) + var_t - 2 * np.sqrt(var_t) * cov / sd_p
        return {
            "voltage_rmse": float(np.sqrt(max(mse, 0.0))),
            "voltage_ev": float(1.0 - var_err / var_t),
            "voltage_ev_calibrated": float(1.0 - var_cal_err / var_t),
        }

    def intervals(self, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile intervals of every metric over ``n_boot`` resamples of whole simulations."""
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(self.n_sims, np.full(self.n_sims, 1.0 / self.n_sims), size=n_boot)
        samples: dict[str, list[float]] = {}
        for weights in draws:
            for name, value in self.metrics(weights).items():
                samples.setdefault(name, []).append(value)
        tail = (1.0 - level) / 2 * 100
        out = {}
        for name, values in samples.items():
            finite = np.asarray(values)[np.isfinite(values)]
            out[name] = (
                (float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail)))
                if finite.size else (float("nan"), float("nan"))
            )
        return out


def evaluate(spike_prob: np.ndarray, spike_true: np.ndarray, v_pred: np.ndarray, v_true: np.ndarray) -> dict[str, float]:
    """All metrics over every bin of the given simulations (``[n_simulations, T]`` arrays)."""
    return Scorer(spike_prob, spike_true, v_pred, v_true).metrics()
