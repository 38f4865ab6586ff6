"""Accuracy metrics of a surrogate against NEURON ground truth.

Voltage is compared with spikes clipped at a fixed ceiling (as in Beniaguev et al.),
on the raw prediction. The published code also z-scores the prediction to the
truth's mean and SD first; that calibrated figure is reported separately as
``voltage_ev_calibrated`` so the two are never confused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

VOLTAGE_CEILING_MV = -55.0


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


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("spike_auc", True, "ROC AUC of output-spike prediction at 1 ms bins"),
        Metric("voltage_ev", True, "explained variance of the clipped somatic voltage (raw prediction)"),
        Metric("voltage_ev_calibrated", True, "explained variance after z-scoring the prediction to the truth"),
        Metric("voltage_rmse", False, "RMSE of the clipped somatic voltage, mV (raw prediction)"),
    )
}


def clip_voltage(voltage: np.ndarray) -> np.ndarray:
    return np.minimum(voltage, VOLTAGE_CEILING_MV)


def evaluate(spike_prob: np.ndarray, spike_true: np.ndarray, v_pred: np.ndarray, v_true: np.ndarray) -> dict[str, float]:
    """All metrics over flattened bins; ``v_true`` is already clipped, ``v_pred`` in mV."""
    spike_true = spike_true.reshape(-1).astype(bool)
    spike_prob = spike_prob.reshape(-1)
    v_true = v_true.reshape(-1).astype(np.float64)
    v_pred = v_pred.reshape(-1).astype(np.float64)
    if spike_true.all() or not spike_true.any():
        auc = float("nan")  # undefined without both classes
    else:
        auc = float(roc_auc_score(spike_true, spike_prob))
    var = float(np.var(v_true)) or 1e-12
    err = v_pred - v_true
    calibrated = (v_pred - v_pred.mean()) / (v_pred.std() or 1.0) * v_true.std() + v_true.mean()
    return {
        "spike_auc": auc,
        "voltage_rmse": float(np.sqrt(np.mean(err**2))),
        "voltage_ev": float(1.0 - np.var(err) / var),
        "voltage_ev_calibrated": float(1.0 - np.var(calibrated - v_true) / var),
    }
