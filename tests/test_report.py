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
