"""Metrics against hand-computable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurosearch.search.answer.metrics import METRICS, clip_voltage, evaluate


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

    from neurosearch.search.answer.metrics import Scorer

    rng = np.random.default_rng(1)
    spikes = (rng.random((12, 400)) < 0.03).astype(float)
    prob = np.round(np.clip(0.4 * spikes + rng.random((12, 400)), 0, 1), 2)  # rounded: many ties
    v_true, v_pred = rng.normal(-70, 3, (12, 400)), rng.normal(-70, 3, (12, 400))
    scorer = Scorer(prob, spikes, v_pred, v_true)
    weights = rng.multinomial(12, np.full(12, 1 / 12))
    rows = np.repeat(np.arange(12), weights)
    got = scorer.metrics(weights)
    want = evaluate(prob[rows], spikes[rows], v_pred[rows], v_true[rows])
    assert got == pytest.approx(want, rel=1e-9, nan_ok=True)
    assert got["spike_auc"] == pytest.approx(roc_auc_score(spikes[rows].ravel(), prob[rows].ravel()), rel=1e-12)
    fpr, tpr, _ = roc_curve(spikes[rows].ravel(), prob[rows].ravel())
    assert got["spike_tpr"] == pytest.approx(tpr[fpr <= 0.001].max())


def test_bootstrap_interval_covers_the_truth_and_narrows_with_more_simulations() -> None:
    from neurosearch.search.answer.metrics import Scorer

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
        if name not in ("spike_auc_1hz", "fci"):  # these simulations fire at 20 Hz: no 1 Hz view
            assert low <= point[name] <= high, name
    np.testing.assert_equal(scorer(16, 0).intervals(300, seed=5), scorer(16, 0).intervals(300, seed=5))  # seeded


def _fires_at(rates_hz: list[float], length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spike trains with exactly rate × length spikes per simulation, and a noisy predictor."""
    rng = np.random.default_rng(seed)
    spikes = np.zeros((len(rates_hz), length))
    for i, rate in enumerate(rates_hz):
        spikes[i, rng.choice(length, int(round(rate * length / 1000)), replace=False)] = 1
    prob = np.round(np.clip(0.3 * spikes * rng.normal(1, 0.5, (len(rates_hz), 1)) + rng.random(spikes.shape), 0, 1), 3)
    return prob, spikes


def test_rate_normalised_auc_equals_the_auc_of_a_split_rebuilt_at_1_hz_by_hand() -> None:
    """Four simulations at 0.5 Hz and three at 2 Hz: the only mix of them with a mean rate of
    1 Hz weights the two groups 2 : 1, i.e. each 0.5 Hz simulation 3 times, each 2 Hz one
    twice. Build that split by repeating simulations and score it with scikit-learn: it
    must be what ``spike_auc_1hz`` says."""
    from sklearn.metrics import roc_auc_score

    from neurosearch.search.answer.metrics import Scorer, fci

    rates = [0.5, 0.5, 0.5, 2.0, 2.0, 0.5, 2.0]
    prob, spikes = _fires_at(rates, 4000, seed=2)
    v = np.full(spikes.shape, -70.0)
    got = Scorer(prob, spikes, v, v).metrics()
    rows = np.repeat(np.arange(len(rates)), [3 if r == 0.5 else 2 for r in rates])
    assert spikes[rows].mean() * 1000 == pytest.approx(1.0)
    by_hand = roc_auc_score(spikes[rows].ravel(), prob[rows].ravel())
    assert got["spike_auc_1hz"] == pytest.approx(by_hand, rel=1e-12)
    assert got["spike_auc_1hz"] != pytest.approx(got["spike_auc"], rel=1e-6)  # the view does change the figure
    assert got["fci"] == pytest.approx(np.log10(1000 * (1 - by_hand)) / 2)
    assert fci(0.9) == pytest.approx(1.0) and fci(0.999) == pytest.approx(0.0, abs=1e-12)


def test_rate_normalised_weights_are_the_smallest_change_that_reaches_1_hz() -> None:
    from neurosearch.search.answer.metrics import rate_normalised

    rates = np.array([0.0, 0.4, 0.9, 1.6, 2.5, 3.8])
    base = np.array([1.0, 2.0, 0.0, 1.0, 3.0, 1.0])  # a bootstrap replicate: one simulation drawn 0 times
    w = rate_normalised(base, rates)
    assert w @ rates / w.sum() == pytest.approx(1.0, rel=1e-9)
    assert w[2] == 0 and w.sum() == pytest.approx(base.sum())
    drawn = base > 0  # exponential tilt: log(w / base) is linear in the rate
    slope = np.polyfit(rates[drawn], np.log(w[drawn] / base[drawn]), 1, full=True)
    assert slope[1].item() < 1e-18
    assert rate_normalised(np.ones(3), np.array([6.0, 12.0, 24.0])) is None  # 1 Hz is out of reach


def test_tpr_is_exact_when_the_weighting_leaves_out_the_highest_scoring_silent_bins() -> None:
    """spike_tpr looks only at the highest-scoring silent bins; a replicate that draws none of
    the simulations holding them must still get the exact figure."""
    from sklearn.metrics import roc_curve

    from neurosearch.search.answer.metrics import Scorer

    prob, spikes = _fires_at([3.0] * 10, 3000, seed=4)
    prob[:2] = np.where(spikes[:2] > 0, prob[:2], prob[:2] + 1.0)  # simulations 0 and 1 hold every top silent bin
    v = np.full(spikes.shape, -70.0)
    weights = np.array([0, 0, 1, 2, 1, 1, 3, 1, 1, 1], dtype=float)
    rows = np.repeat(np.arange(10), weights.astype(int))
    fpr, tpr, _ = roc_curve(spikes[rows].ravel(), prob[rows].ravel())
    assert Scorer(prob, spikes, v, v).metrics(weights)["spike_tpr"] == pytest.approx(tpr[fpr <= 0.001].max())
