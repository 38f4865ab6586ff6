"""Metrics against hand-computable cases."""

from __future__ import annotations

import math

import numpy as np

from neurosearch.search.metrics import METRICS, clip_voltage, evaluate


def test_perfect_and_chance_predictions() -> None:
    rng = np.random.default_rng(0)
    spikes = rng.random(5000) < 0.02
    v = rng.normal(-70, 3, 5000)
    perfect = evaluate(spikes.astype(float), spikes, v, v)
    assert perfect["spike_auc"] == 1.0 and perfect["voltage_rmse"] == 0.0 and perfect["voltage_ev"] == 1.0
    chance = evaluate(rng.random(5000), spikes, np.full(5000, v.mean()), v)
    assert abs(chance["spike_auc"] - 0.5) < 0.1
    assert abs(chance["voltage_ev"]) < 1e-9 and math.isclose(chance["voltage_rmse"], v.std(), rel_tol=1e-6)


def test_calibrated_ev_is_reported_apart_from_raw() -> None:
    v = np.sin(np.linspace(0, 20, 2000)) * 5 - 70
    scaled = (v - v.mean()) * 0.5 + v.mean() + 2.0  # right shape, wrong gain and offset
    result = evaluate(np.zeros(2000), np.r_[1, np.zeros(1999)], scaled, v)
    assert result["voltage_ev_calibrated"] > 0.999 > result["voltage_ev"]


def test_auc_undefined_without_spikes_and_clipping() -> None:
    assert math.isnan(evaluate(np.zeros(10), np.zeros(10), np.zeros(10), np.ones(10))["spike_auc"])
    assert clip_voltage(np.array([-80.0, -55.0, 20.0])).tolist() == [-80.0, -55.0, -55.0]
    assert METRICS["voltage_rmse"].passes(0.5, 1.0) and not METRICS["spike_auc"].passes(0.5, 0.99)
