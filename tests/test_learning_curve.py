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


# --------------------------------------------------------------------------- measured in a study (runner)


def test_one_curve_for_the_candidate_closest_to_the_target(tmp_path, tiny_toml) -> None:
    """Where no family passes, only the closest candidate's curve is measured (each costs
    about a trial's training again), really retrained on parts of a real dataset, each
    part with epochs of the same share of a pass; where a family passes, none is."""
    import optuna
    import torch
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from neurosearch.search.answer.confirm import Confirmation, confirmation_key
    from neurosearch.search.answer.learning_curve import _scaled
    from neurosearch.search.config import load_config
    from neurosearch.search.runner import _learning_curves
    from neurosearch.search.study.attrs import ATTR_SPEC, ATTR_VAL_METRICS
    from neurosearch.search.study.workspace import Workspace
    from neurosearch.search.training.objective import StudyContext
    from neurosearch.simulators import generate

    (tmp_path / "search.toml").write_text(tiny_toml(name="curve", epochs=1, steps_per_epoch=4))
    config = load_config(tmp_path / "search.toml")
    config.study.families = ["tcn", "mlp"]
    dataset = generate(config.simulator, Workspace.of(config).datasets, progress=False)
    ctx = StudyContext(config, dataset, torch.device("cpu"), tracker=None, parent_run_id="")
    assert _scaled(config.training, 0.25).steps_per_epoch == 1 and _scaled(config.training, 0.5).steps_per_epoch == 2
    assert _scaled(config.training.model_copy(update={"steps_per_epoch": None}), 0.25).steps_per_epoch is None

    def study_with(tcn_valid: float, mlp_valid: float, mlp_passes: bool) -> optuna.Study:
        study = optuna.create_study(storage=f"sqlite:///{tmp_path}/curve{len(list(tmp_path.glob('*.db')))}.db",
                                    direction="maximize")
        spec = {"family": "tcn", "depth": 1, "width": 8, "kernels": [10], "dilations": [1], "residual": False,
                "norm": "none", "activation": "relu"}
        for number, (family, valid) in enumerate((("tcn", tcn_valid), ("mlp", mlp_valid))):
            study.add_trial(optuna.trial.create_trial(
                params={"family": family, "depth": 1, "repeat": 0, "lr": 1e-3},
                distributions={"family": CategoricalDistribution(["mlp", "tcn"]), "depth": IntDistribution(1, 64),
                               "repeat": IntDistribution(0, 10_000), "lr": FloatDistribution(1e-4, 1e-1, log=True)},
                value=valid, user_attrs={ATTR_SPEC: spec if family == "tcn" else {},
                                         ATTR_VAL_METRICS: {"spike_auc": valid}}))
            figures = {"spike_auc": [valid, valid - 0.01, valid + 0.01]}
            record = Confirmation(family, 1, number, figures, figures, family == "mlp" and mlp_passes, 1, 1)
            study.set_user_attr(confirmation_key(family, 1), record.to_dict())
        return study

    nothing_passes = study_with(tcn_valid=0.8, mlp_valid=0.7, mlp_passes=False)
    _learning_curves(nothing_passes, ctx, None)
    curves = {k: v for k, v in nothing_passes.user_attrs.items() if k.startswith("learning_curve:")}
    assert list(curves) == ["learning_curve:tcn:1"]  # the closer of the two, and only it
    assert curves["learning_curve:tcn:1"]["values"][-1] == 0.8 and len(curves["learning_curve:tcn:1"]["values"]) >= 2
    one_passes = study_with(tcn_valid=0.8, mlp_valid=0.7, mlp_passes=True)
    _learning_curves(one_passes, ctx, None)
    assert not [k for k in one_passes.user_attrs if k.startswith("learning_curve:")]
