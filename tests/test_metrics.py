"""Metrics against hand-computable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

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


def test_weighted_metrics_equal_metrics_of_repeated_simulations() -> None:
    """The bootstrap's weights mean 'this simulation counted k times', exactly."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from neurosearch.search.metrics import Scorer

    rng = np.random.default_rng(1)
    spikes = (rng.random((12, 400)) < 0.03).astype(float)
    prob = np.round(np.clip(0.4 * spikes + rng.random((12, 400)), 0, 1), 2)  # rounded: many ties
    v_true, v_pred = rng.normal(-70, 3, (12, 400)), rng.normal(-70, 3, (12, 400))
    scorer = Scorer(prob, spikes, v_pred, v_true)
    weights = rng.multinomial(12, np.full(12, 1 / 12))
    rows = np.repeat(np.arange(12), weights)
    got = scorer.metrics(weights)
    want = evaluate(prob[rows], spikes[rows], v_pred[rows], v_true[rows])
    assert got == pytest.approx(want, rel=1e-9)
    assert got["spike_auc"] == pytest.approx(roc_auc_score(spikes[rows].ravel(), prob[rows].ravel()), rel=1e-12)
    fpr, tpr, _ = roc_curve(spikes[rows].ravel(), prob[rows].ravel())
    assert got["spike_tpr"] == pytest.approx(tpr[fpr <= 0.001].max())


def test_bootstrap_interval_covers_the_truth_and_narrows_with_more_simulations() -> None:
    from neurosearch.search.metrics import Scorer

    def scorer(n_sims: int, seed: int) -> Scorer:
        rng = np.random.default_rng(seed)
        spikes = (rng.random((n_sims, 300)) < 0.02).astype(float)
        skill = rng.normal(1.0, 0.5, (n_sims, 1))  # simulations differ: the cluster effect
        prob = spikes * skill + rng.random((n_sims, 300))
        v = rng.normal(-70, 3, (n_sims, 300))
        return Scorer(prob, spikes, v + rng.normal(0, 1, v.shape), v)

    few, many = scorer(16, 0).intervals(300, seed=0), scorer(256, 0).intervals(300, seed=0)
    width = lambda iv: iv[1] - iv[0]  # noqa: E731
    assert width(many["spike_auc"]) < 0.5 * width(few["spike_auc"])
    point = scorer(16, 0).metrics()
    for name, (low, high) in few.items():
        assert low <= point[name] <= high, name
    assert scorer(16, 0).intervals(300, seed=5) == scorer(16, 0).intervals(300, seed=5)  # seeded
