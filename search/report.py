"""The study's answer with its evidence: per family and depth, the best metric
reached and the budget spent there; the shallowest depth whose network passes;
that network's test-split figures.

Built from the Optuna storage alone (plus attributes the study recorded), so any
machine that can reach the database can print it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from .metrics import METRICS
from .workspace import (
    ATTR_N_PARAMS,
    ATTR_SKIP_REASON,
    ATTR_TARGET_METRIC,
    ATTR_TARGET_THRESHOLD,
    ATTR_TEST_METRICS,
    ATTR_TRAIN_SECONDS,
)


@dataclass
class DepthRow:
    family: str
    depth: int
    complete: int = 0
    pruned: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0
    best: float | None = None
    best_trial: int | None = None
    n_params: int | None = None
    seconds: float = 0.0
    passes: bool = False


@dataclass
class Winner:
    trial: int
    family: str
    depth: int
    value: float
    n_params: int | None
    passes: bool
    test: dict[str, float] | None = None


@dataclass
class StudyReport:
    study: str
    metric: str
    threshold: float
    rows: list[DepthRow]
    shallowest: dict[str, int | None]
    winner: Winner | None
    trials: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _best_value(trial: FrozenTrial, higher: bool) -> float | None:
    if trial.state == TrialState.COMPLETE:
        return trial.value
    values = [v for v in trial.intermediate_values.values() if v == v]
    if not values:
        return None
    return max(values) if higher else min(values)


def test_attr(number: int) -> str:
    return f"{ATTR_TEST_METRICS}:{number}"


def build_report(study: optuna.Study) -> StudyReport:
    attrs = study.user_attrs
    metric_name = attrs.get(ATTR_TARGET_METRIC, "spike_auc")
    threshold = float(attrs.get(ATTR_TARGET_THRESHOLD, 0.99))
    metric = METRICS[metric_name]
    trials = [t for t in study.get_trials(deepcopy=False) if "family" in t.params]
    rows: dict[tuple[str, int], DepthRow] = {}
    counts = {state.name: 0 for state in TrialState}
    for t in trials:
        counts[t.state.name] += 1
        key = (t.params["family"], t.params["depth"])
        row = rows.setdefault(key, DepthRow(*key))
        row.seconds += float(t.user_attrs.get(ATTR_TRAIN_SECONDS, 0.0))
        if t.state == TrialState.WAITING or t.state == TrialState.RUNNING:
            row.pending += 1
            continue
        if t.state == TrialState.FAIL:
            row.failed += 1
            continue
        if ATTR_SKIP_REASON in t.user_attrs:
            row.skipped += 1
            continue
        row.complete += t.state == TrialState.COMPLETE
        row.pruned += t.state == TrialState.PRUNED
        value = _best_value(t, metric.higher_is_better)
        if value is not None and (row.best is None or metric.better(value, row.best)):
            row.best, row.best_trial, row.n_params = value, t.number, t.user_attrs.get(ATTR_N_PARAMS)
        if t.state == TrialState.COMPLETE and t.value is not None and metric.passes(t.value, threshold):
            row.passes = True
    ordered = sorted(rows.values(), key=lambda r: (r.family, r.depth))
    shallowest: dict[str, int | None] = {}
    for row in ordered:
        shallowest.setdefault(row.family, None)
        if row.passes and shallowest[row.family] is None:
            shallowest[row.family] = row.depth
    return StudyReport(
        study=study.study_name,
        metric=metric_name,
        threshold=threshold,
        rows=ordered,
        shallowest=shallowest,
        winner=_winner(trials, metric_name, threshold, attrs),
        trials={k: v for k, v in counts.items() if v},
    )


def _winner(trials: list[FrozenTrial], metric_name: str, threshold: float, attrs: dict) -> Winner | None:
    """Shallowest passing network (ties: better metric); else the best network overall."""
    metric = METRICS[metric_name]
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and t.value == t.value]
    if not done:
        return None
    passing = [t for t in done if metric.passes(t.value, threshold)]
    sign = 1.0 if metric.higher_is_better else -1.0
    if passing:
        best = min(passing, key=lambda t: (t.params["depth"], -sign * t.value))
    else:
        best = max(done, key=lambda t: sign * t.value)
    return Winner(
        trial=best.number,
        family=best.params["family"],
        depth=best.params["depth"],
        value=float(best.value),
        n_params=best.user_attrs.get(ATTR_N_PARAMS),
        passes=bool(passing),
        test=attrs.get(test_attr(best.number)),
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def frontier_table(report: StudyReport, families: list[str]) -> Table:
    """The depth frontier with the families side by side: best metric per depth (✓ = passes)."""
    table = Table(title=f"depth frontier: best validation {report.metric}")
    table.add_column("depth", justify="right")
    for family in families:
        table.add_column(family, justify="right")
    cells = {(r.family, r.depth): r for r in report.rows}
    for depth in sorted({r.depth for r in report.rows}):
        row = [str(depth)]
        for family in families:
            r = cells.get((family, depth))
            row.append("" if r is None else _fmt(r.best) + (" ✓" if r.passes else ""))
        table.add_row(*row)
    return table


def render(report: StudyReport, console: Console) -> None:
    metric = METRICS[report.metric]
    op = "≥" if metric.higher_is_better else "≤"
    table = Table(title=f"study {report.study}: best validation {report.metric} per depth (target {op} {report.threshold})")
    for column in ("family", "depth", f"best {report.metric}", "trial", "params", "trials c/p/s/f/w", "train s", "passes"):
        table.add_column(column, justify="left" if column == "family" else "right")
    for row in report.rows:
        table.add_row(
            row.family, str(row.depth), _fmt(row.best), "—" if row.best_trial is None else str(row.best_trial),
            "—" if row.n_params is None else f"{row.n_params:,}",
            f"{row.complete}/{row.pruned}/{row.skipped}/{row.failed}/{row.pending}", f"{row.seconds:.0f}",
            "[green]yes[/green]" if row.passes else "no",
        )
    table.caption = "trials: complete / pruned / skipped (a shallower depth passed) / failed / waiting or running"
    console.print(table)
    families = list(report.shallowest)
    if len(families) > 1:
        console.print(frontier_table(report, families))
    for family, depth in report.shallowest.items():
        if depth is None:
            best = max(
                (r for r in report.rows if r.family == family and r.best is not None),
                key=lambda r: r.best if metric.higher_is_better else -r.best,
                default=None,
            )
            reached = f"best reached {_fmt(best.best)} at depth {best.depth}" if best else "no trial finished yet"
            console.print(f"[bold]{family}[/bold]: no depth meets the target ({reached})")
        else:
            console.print(f"[bold]{family}[/bold]: shallowest passing depth [bold green]{depth}[/bold green]")
    winner = report.winner
    if winner is None:
        console.print("No trial has finished yet.")
        return
    label = "Shallowest passing network" if winner.passes else "No network met the target; best network"
    console.print(
        f"{label}: trial {winner.trial}, {winner.family} depth {winner.depth}, "
        f"{winner.n_params or 0:,} params, validation {report.metric} {winner.value:.4f}"
    )
    if winner.test:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in winner.test.items())
        console.print(f"  on the test split (seen by no trial): {figures}")
    else:
        console.print("  test split: not evaluated yet (run `neurosearch run` or `neurosearch report` with the config)")
