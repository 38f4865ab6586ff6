"""The learning-curve fit: a known power law comes back, and weak extrapolations say so."""

from __future__ import annotations

import pytest

from neurosearch.search.answer.learning_curve import LearningCurve, describe, fit


def curve(values: list[float], seconds=(100.0, 200.0, 400.0, 800.0)) -> LearningCurve:
    return LearningCurve("tcn", 3, 7, "spike_auc", 0.99, list(seconds), values)


def test_a_power_law_is_recovered_and_inverted() -> None:
    # error = 0.5 * s^-0.5: 0.05 at 100 s ... the threshold's 0.01 at 2500 s
    values = [1 - 0.5 * s**-0.5 for s in (100, 200, 400, 800)]
    got = fit(curve(values), True, neuron_wall_s_per_simulated_s=0.72, train_wall_s_at_largest=80.0)
    assert got.exponent == pytest.approx(-0.5, abs=1e-9) and got.r2 == pytest.approx(1.0)
    assert got.needed_seconds == pytest.approx(2500.0, rel=1e-6)
    assert got.neuron_core_hours == pytest.approx(2500 * 0.72 / 3600)
    assert got.train_hours == pytest.approx(80.0 * 2500 / 800 / 3600)
    assert not got.weak and "needs ≈ 2,500 simulated seconds" in describe(got)


def test_a_pass_is_judged_on_the_test_bound_so_the_curve_is_inverted_past_the_threshold() -> None:
    # error = 0.5 * s^-0.5; a test interval reaching 0.005 below the candidate needs a point of
    # 0.995 (error 0.005), at 10,000 s, not the 2,500 s where the point itself reaches 0.99
    values = [1 - 0.5 * s**-0.5 for s in (100, 200, 400, 800)]
    got = fit(LearningCurve("tcn", 3, 7, "spike_auc", 0.99, [100.0, 200.0, 400.0, 800.0], values, margin=0.005), True)
    assert got.needed_value == pytest.approx(0.995) and got.needed_seconds == pytest.approx(10_000.0, rel=1e-6)
    assert "on the test bound (a point of ≈ 0.9950" in describe(got)
    rmse = fit(LearningCurve("mlp", 1, 0, "voltage_rmse", 0.5, [100.0, 200.0, 400.0, 800.0],
                             [2.0 * s**-0.5 for s in (100, 200, 400, 800)], margin=0.1), False)
    assert rmse.needed_value == pytest.approx(0.4) and rmse.needed_seconds == pytest.approx(25.0, rel=1e-6)  # 2·s^-0.5 = 0.4


def test_a_curve_that_flattens_is_weak_and_says_what_its_last_step_would_need() -> None:
    # steep at small data, then error 0.02 -> 0.016 from 400 to 800 s (seconds^-0.32): the
    # fit over all points promises less data than the last step's own slope
    got = fit(curve([1 - 0.1, 1 - 0.04, 1 - 0.02, 1 - 0.016]), True)
    assert got.weak and "the curve flattens (its last step falls as seconds^-0.32" in got.why_weak
    last = 800 * (0.01 / 0.016) ** (1 / -0.3219)  # where the last step's power law reaches error 0.01
    assert f"≈ {last:,.0f} simulated seconds" in got.why_weak and last > got.needed_seconds
    steady = fit(curve([1 - 0.5 * s**-0.5 for s in (100, 200, 400, 800)]), True)
    assert "flattens" not in steady.why_weak


def test_flat_or_far_curves_are_marked_weak() -> None:
    flat = fit(curve([0.95, 0.951, 0.949, 0.95]), True)
    assert flat.weak and flat.needed_seconds is None and "does not fall" in flat.why_weak
    far = fit(curve([1 - 0.05 * (s / 800) ** -0.5 for s in (100, 200, 400, 800)]), True)  # 0.99 at 25× the data
    assert far.weak and far.needed_seconds == pytest.approx(25 * 800) and "25× beyond the data measured" in describe(far)


def test_lower_is_better_metrics_fit_the_metric_itself() -> None:
    rmse = [2.0 * (s / 100) ** -0.3 for s in (100, 200, 400, 800)]
    got = fit(LearningCurve("mlp", 1, 0, "voltage_rmse", 0.5, [100.0, 200.0, 400.0, 800.0], rmse), False)
    assert got.exponent == pytest.approx(-0.3) and got.needed_seconds == pytest.approx(100 * 4 ** (1 / 0.3), rel=1e-6)


def test_a_hopeless_curve_gives_no_absurd_figure() -> None:
    flat = fit(curve([1 - 0.15 * s**-0.03 for s in (100, 200, 400, 800)]), True, 0.7, 60.0)
    assert flat.weak and flat.needed_seconds > 1000 * 800
    text = describe(flat)
    assert "out of reach by more data alone" in text and "NEURON core-hours" not in text
