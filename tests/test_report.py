"""The printed report: the per-depth evidence and, with several families, their frontiers side by side."""

from __future__ import annotations

from rich.console import Console

from neurosearch.search.answer.report import DepthRow, StudyReport, render


def _row(family: str, depth: int, best: float, passes: bool = False) -> DepthRow:
    row = DepthRow(family, depth)
    row.best, row.best_trial, row.n_params, row.complete, row.passes = best, depth, 1000, 1, passes
    return row


def test_families_side_by_side_and_shallowest_per_family() -> None:
    report = StudyReport(
        study="s", metric="spike_auc", threshold=0.95,
        rows=[_row("mlp", 1, 0.91), _row("mlp", 2, 0.96, passes=True), _row("tcn", 1, 0.97, passes=True)],
        shallowest={"mlp": 2, "tcn": 1}, winner=None, trials={"COMPLETE": 3},
    )
    console = Console(record=True, width=120)
    render(report, console)
    text = console.export_text()
    assert "depth frontier" in text
    header = next(line for line in text.splitlines() if "depth" in line and "mlp" in line and "tcn" in line)
    assert header.index("mlp") < header.index("tcn")
    depth2 = next(line for line in text.splitlines() if "0.9600 ✓" in line)
    assert depth2.split()[1] == "2"  # a row per depth; tcn has no depth 2
    assert "mlp: shallowest passing depth 2" in text and "tcn: shallowest passing depth 1" in text


def test_one_family_has_no_frontier_table() -> None:
    report = StudyReport(study="s", metric="spike_auc", threshold=0.99, rows=[_row("tcn", 1, 0.9)],
                         shallowest={"tcn": None}, winner=None, trials={"COMPLETE": 1})
    console = Console(record=True, width=120)
    render(report, console)
    text = console.export_text()
    assert "depth frontier" not in text and "best reached 0.9000 at depth 1" in text


def _study_of_two_families():
    """A real (in-memory) Optuna study: at depth 2 an MLP and a TCN both pass on test, the
    MLP smaller; depth 1 passes nowhere."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.trial import create_trial

    from neurosearch.search.answer.confirm import Confirmation, confirmation_key

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    space = {"family": CategoricalDistribution(["mlp", "tcn"]), "depth": IntDistribution(1, 4)}
    for family, depth, value, size in (("tcn", 1, 0.95, 5_000), ("mlp", 1, 0.96, 900), ("tcn", 2, 0.995, 80_000),
                                       ("tcn", 2, 0.990, 20_000), ("mlp", 2, 0.993, 12_000), ("mlp", 2, 0.980, 30_000)):
        study.add_trial(create_trial(params={"family": family, "depth": depth}, distributions=space, value=value,
                                     user_attrs={"n_params": size}))
    for family, trial, valid in (("tcn", 2, 0.995), ("mlp", 4, 0.993)):
        record = Confirmation(family=family, depth=2, trial=trial, valid={"spike_auc": [valid, valid - 0.002, 0.999]},
                              test={"spike_auc": [0.994, 0.991, 0.997]}, passes=True, n_valid=10, n_test=10)
        study.set_user_attr(confirmation_key(family, 2), record.to_dict())
    study.set_user_attr("target_threshold", 0.99)
    return study


def test_among_passing_networks_the_shallowest_then_the_smallest_wins() -> None:
    from neurosearch.search.answer.report import build_report

    report = build_report(_study_of_two_families())
    assert (report.winner.family, report.winner.depth, report.winner.n_params) == ("mlp", 2, 12_000)
    # the TCN had the better validation value; at the same depth the smaller network wins


def test_the_pareto_front_per_depth_is_reported_and_drawn(tmp_path) -> None:
    import io

    from neurosearch.search.answer.report import build_report
    from neurosearch.search.tracking.artifacts import plot_pareto

    report = build_report(_study_of_two_families())
    front = {(p["depth"], p["trial"]) for p in report.points if p["front"]}
    # depth 1: the MLP is smaller and better, the TCN dominated; depth 2: 12k at 0.993 and 80k at 0.995
    # are the front, 20k at 0.990 and 30k at 0.980 are beaten by the 12k one on both counts
    assert front == {(1, 1), (2, 4), (2, 2)}
    out = io.StringIO()
    render(report, Console(file=out, width=200))
    assert "Pareto front" in out.getvalue() and "12,000" in out.getvalue() and "30,000" not in out.getvalue().split(
        "Pareto front")[1]
    png = plot_pareto(report, tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
