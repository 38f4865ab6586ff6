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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOLTAGE_CEILING_MV = -55.0
FALSE_POSITIVE_RATE = 0.001
"""Operating point of ``spike_tpr``: Beniaguev et al.'s second figure of merit."""


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
        Metric("spike_tpr", True, "true-positive rate of spike prediction at 0.1% false positives"),
        Metric("voltage_ev", True, "explained variance of the clipped somatic voltage (raw prediction)"),
        Metric("voltage_ev_calibrated", True, "explained variance after z-scoring the prediction to the truth"),
        Metric("voltage_rmse", False, "RMSE of the clipped somatic voltage, mV (raw prediction)"),
    )
}


def clip_voltage(voltage: np.ndarray) -> np.ndarray:
    return np.minimum(voltage, VOLTAGE_CEILING_MV)


class Scorer:
    """The metrics of one prediction of whole simulations, for any weighting of them.

    Arrays are ``[n_simulations, T]``: spike probability, 0/1 spikes, predicted voltage
    (mV) and clipped true voltage.
    """

    def __init__(self, spike_prob: np.ndarray, spike_true: np.ndarray, v_pred: np.ndarray, v_true: np.ndarray):
        spike_prob, spike_true, v_pred, v_true = (np.atleast_2d(a) for a in (spike_prob, spike_true, v_pred, v_true))
        n_sims = spike_prob.shape[0]
        self.n_sims = n_sims
        score = spike_prob.reshape(-1).astype(np.float64)
        label = spike_true.reshape(-1).astype(bool)
        sim = np.repeat(np.arange(n_sims), spike_prob.shape[1])
        order = np.argsort(score, kind="stable")
        sorted_score = score[order]
        # bins with equal scores form one group (ties count one half in the AUC)
        new_group = np.ones(sorted_score.size, dtype=bool)
        new_group[1:] = sorted_score[1:] != sorted_score[:-1]
        self._group = np.cumsum(new_group) - 1
        self._n_groups = int(self._group[-1]) + 1 if self._group.size else 0
        self._sim = sim[order]
        self._label = label[order]
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
        auc, tpr = self._spike(w_sim)
        return {"spike_auc": auc, "spike_tpr": tpr, **self._voltage(w_sim)}

    def _spike(self, w_sim: np.ndarray) -> tuple[float, float]:
        w = w_sim[self._sim]
        w_pos = np.where(self._label, w, 0.0)
        w_neg = w - w_pos
        total_pos, total_neg = w_pos.sum(), w_neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return float("nan"), float("nan")  # undefined without both classes
        neg_in_group = np.bincount(self._group, weights=w_neg, minlength=self._n_groups)
        below = np.cumsum(neg_in_group) - neg_in_group
        auc = float(np.sum(w_pos * (below[self._group] + 0.5 * neg_in_group[self._group])) / (total_pos * total_neg))
        # TPR at the highest threshold that lets through at most FALSE_POSITIVE_RATE of negatives
        pos_in_group = np.bincount(self._group, weights=w_pos, minlength=self._n_groups)
        neg_above = np.cumsum(neg_in_group[::-1])[::-1]  # negatives at or above each group's score
        pos_above = np.cumsum(pos_in_group[::-1])[::-1]
        allowed = neg_above <= FALSE_POSITIVE_RATE * total_neg
        tpr = float(pos_above[np.argmax(allowed)] / total_pos) if allowed.any() else 0.0
        return auc, tpr

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
