"""The study's answer with its evidence: per family and depth, the best validation value
reached and the budget spent there; the depth's candidate on validation and on the test
split, each with its 95% interval; the shallowest depth whose test bound clears the
threshold (docs/DESIGN.md, evaluation protocol); and, where nothing passes, how much
ground truth a pass would take (the learning curve).

Built from the Optuna storage alone (plus attributes the study recorded), so any
machine that can reach the database can print it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..study.attrs import (
    ATTR_LEARNING_CURVE,
    ATTR_N_PARAMS,
    ATTR_SKIP_REASON,
    ATTR_TARGET_METRIC,
    ATTR_TARGET_THRESHOLD,
    ATTR_TRAIN_SECONDS,
)
from .confirm import Confirmation, confirmations
from .learning_curve import LearningCurve, describe
from .metrics import METRICS
from .settle import settlement

if TYPE_CHECKING:
    from ..study.reader import StoredStudy


@dataclass
class DepthRow:
    family: str
    depth: int
    complete: int = 0
    pruned: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0
    best: float | None = None  # best validation value of any trial (pruned ones too)
    best_trial: int | None = None
    n_params: int | None = None
    seconds: float = 0.0
    candidate: int | None = None  # the trial confirmed on test for this depth
    valid: list[float] | None = None  # candidate's [value, low, high] on validation
    test: list[float] | None = None  # candidate's [value, low, high] on test
    passes: bool = False  # the test interval's pessimistic end clears the threshold
    test_1hz: list[float] | None = None  # candidate's spike AUC on test normalised to 1 Hz, [value, low, high]
    fci: list[float] | None = None  # the Functional Complexity Index of that AUC, [value, low, high]
    settled: str | None = None  # "above" or "below": the depth stopped, its validation interval clearly on that side (settle.py)


@dataclass
class Winner:
    trial: int
    family: str
    depth: int
    value: float  # validation value of the target metric
    n_params: int | None
    passes: bool
    test: dict[str, float] | None = None  # every metric on the test split
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # {split: {metric: [low, high]}}


@dataclass
class StudyReport:
    study: str
    metric: str
    threshold: float
    rows: list[DepthRow]
    shallowest: dict[str, int | None]
    winner: Winner | None
    trials: dict[str, int] = field(default_factory=dict)
    learning_curves: list[dict] = field(default_factory=list)
    scored: dict[str, dict[str, float]] = field(default_factory=dict)  # per split: simulations, spikes, mean rate
    #: every trial with a validation value and a size: {family, depth, trial, n_params, value, front}; ``front``
    #: marks the depth's Pareto front (no trial of that depth is both smaller and at least as good)
    points: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        """Strict JSON: an undefined figure (NaN, e.g. the 1 Hz view of a split that never
        fires below 1 Hz) is null."""
        return json.dumps(json_ready(asdict(self)), indent=2, allow_nan=False)


def json_ready(value: Any) -> Any:
    """``value`` with every NaN replaced by None, for strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _best_value(trial: FrozenTrial, higher: bool) -> float | None:
    if trial.state == TrialState.COMPLETE:
        return trial.value
    values = [v for v in trial.intermediate_values.values() if v == v]
    if not values:
        return None
    return max(values) if higher else min(values)


def learning_curve_key(family: str, depth: int) -> str:
    return f"{ATTR_LEARNING_CURVE}:{family}:{depth}"


def build_report(study: optuna.Study | StoredStudy) -> StudyReport:
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
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            row.pending += 1
            continue
        if ATTR_SKIP_REASON in t.user_attrs and t.state != TrialState.COMPLETE:
            row.skipped += 1
            continue
        if t.state == TrialState.FAIL:
            row.failed += 1
            continue
        row.complete += t.state == TrialState.COMPLETE
        row.pruned += t.state == TrialState.PRUNED
        value = _best_value(t, metric.higher_is_better)
        if value is not None and (row.best is None or metric.better(value, row.best)):
            row.best, row.best_trial, row.n_params = value, t.number, t.user_attrs.get(ATTR_N_PARAMS)
    confirmed = confirmations(study)
    for key, record in confirmed.items():
        row = rows.get(key)
        if row is not None and metric_name in record.test:
            row.candidate, row.passes = record.trial, record.passes
            row.n_params = next((t.user_attrs.get(ATTR_N_PARAMS) for t in trials if t.number == record.trial),
                                row.n_params)
            row.valid, row.test = record.valid[metric_name], record.test[metric_name]
            row.test_1hz, row.fci = record.test.get("spike_auc_1hz"), record.test.get("fci")
    for (family, depth), row in rows.items():
        record = settlement(study, family, depth)
        if record is not None and record.settled:
            row.settled = record.verdict
    ordered = sorted(rows.values(), key=lambda r: (r.family, r.depth))
    shallowest: dict[str, int | None] = {}
    for row in ordered:
        shallowest.setdefault(row.family, None)
        if row.passes and shallowest[row.family] is None:
            shallowest[row.family] = row.depth
    curves = [v for k, v in sorted(attrs.items()) if k.startswith(f"{ATTR_LEARNING_CURVE}:") and isinstance(v, dict)]
    return StudyReport(
        study=study.study_name,
        metric=metric_name,
        threshold=threshold,
        rows=ordered,
        shallowest=shallowest,
        winner=_winner(trials, metric_name, confirmed),
        trials={k: v for k, v in counts.items() if v},
        learning_curves=curves,
        scored=_scored_data(confirmed),
        points=_points(trials, metric.higher_is_better),
    )


def _points(trials: list[FrozenTrial], higher_is_better: bool) -> list[dict[str, Any]]:
    """Validation value against parameter count for every trial that has both, each
    marked whether it lies on its depth's Pareto front: "shallowest" and "smallest" read
    off one study."""
    sign = 1.0 if higher_is_better else -1.0
    points = []
    for t in trials:
        value, size = _best_value(t, higher_is_better), t.user_attrs.get(ATTR_N_PARAMS)
        if value is not None and size is not None:
            points.append({"family": t.params["family"], "depth": int(t.params["depth"]), "trial": t.number,
                           "n_params": int(size), "value": float(value), "front": False})
    for point in points:
        point["front"] = not any(
            other is not point and other["depth"] == point["depth"] and other["n_params"] <= point["n_params"]
            and sign * other["value"] >= sign * point["value"]
            and (other["n_params"], sign * other["value"]) != (point["n_params"], sign * point["value"])
            for other in points)
    return sorted(points, key=lambda p: (p["depth"], p["n_params"], p["trial"]))


def _scored_data(confirmed: dict[tuple[str, int], Confirmation]) -> dict[str, dict[str, float]]:
    """What the candidates were scored on, per split (the same for every depth): the number
    of simulations and output spikes and their mean rate, which decides what an AUC means."""
    record = next((c for c in confirmed.values() if c.rate_hz), None)
    if record is None:
        return {}
    sims = {"valid": record.n_valid, "test": record.n_test}
    return {split: {"simulations": sims[split], "spikes": record.spikes[split], "rate_hz": record.rate_hz[split]}
            for split in record.rate_hz}


def _winner(trials: list[FrozenTrial], metric_name: str, confirmed: dict[tuple[str, int], Confirmation]) -> Winner | None:
    """Among candidates that passed on test: the shallowest, then the smallest (fewest
    parameters: families compete at one depth), then the better validation value; else
    the confirmed candidate with the best validation value; else, before any
    confirmation, the best finished trial (no test figures yet)."""
    metric = METRICS[metric_name]
    sign = 1.0 if metric.higher_is_better else -1.0
    by_number = {t.number: t for t in trials}
    records = [c for c in confirmed.values() if c.trial in by_number and metric_name in c.valid]
    passing = [c for c in records if c.passes]
    if passing:
        best = min(passing, key=lambda c: (c.depth, by_number[c.trial].user_attrs.get(ATTR_N_PARAMS) or float("inf"),
                                           -sign * c.valid[metric_name][0]))
    elif records:
        best = max(records, key=lambda c: sign * c.valid[metric_name][0])
    else:
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and t.value == t.value]
        if not done:
            return None
        t = max(done, key=lambda t: sign * t.value)
        return Winner(trial=t.number, family=t.params["family"], depth=t.params["depth"], value=float(t.value),
                      n_params=t.user_attrs.get(ATTR_N_PARAMS), passes=False)
    trial = by_number[best.trial]
    return Winner(
        trial=best.trial,
        family=best.family,
        depth=best.depth,
        value=float(best.valid[metric_name][0]),
        n_params=trial.user_attrs.get(ATTR_N_PARAMS),
        passes=best.passes,
        test={k: v[0] for k, v in best.test.items()},
        intervals={"valid": {k: v[1:] for k, v in best.valid.items()}, "test": {k: v[1:] for k, v in best.test.items()}},
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def fmt_interval(figure: list[float] | None) -> str:
    """value [low–high]"""
    return "—" if not figure or figure[0] != figure[0] else f"{figure[0]:.4f} [{figure[1]:.4f}–{figure[2]:.4f}]"


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


def pareto_table(report: StudyReport, front: list[dict[str, Any]]) -> Table:
    """Per depth, the smallest networks for their validation value: every trial no other
    trial of its depth beats on both size and value (all trials: bench/MLflow's pareto plot)."""
    table = Table(title=f"smallest networks per depth: validation {report.metric} against parameters "
                        "(the Pareto front of each depth)")
    for column in ("depth", "family", "trial", "params", f"best valid {report.metric}"):
        table.add_column(column, justify="left" if column == "family" else "right")
    for p in front:
        table.add_row(str(p["depth"]), p["family"], str(p["trial"]), f"{p['n_params']:,}", _fmt(p["value"]))
    return table


def print_whole_rows(table: Table, console: Console, log_width: int) -> None:
    """Print ``table``; into a log file or a pipe at least ``log_width`` columns wide, so
    that rows stay whole (grep finds them)."""
    width = console.width
    if not console.is_terminal:
        console.width = max(width, log_width)
    try:
        console.print(table)
    finally:
        console.width = width


def render(report: StudyReport, console: Console) -> None:
    metric = METRICS[report.metric]
    op = "≥" if metric.higher_is_better else "≤"
    bound = "lower" if metric.higher_is_better else "upper"
    table = Table(title=f"study {escape(report.study)}: {report.metric} per depth (a depth passes when its test "
                        f"95% {bound} bound {op} {report.threshold})")
    columns = ("family", "depth", "best valid", "candidate", "valid [95% CI]", "test [95% CI]",
               "test AUC at 1 Hz [95% CI]", "FCI [95% CI]", "params", "trials c/p/s/f/w", "train s", "passes")
    for column in columns:
        table.add_column(column, justify="left" if column == "family" else "right", no_wrap=True)
    for row in report.rows:
        table.add_row(
            row.family, str(row.depth), _fmt(row.best), "—" if row.candidate is None else f"trial {row.candidate}",
            fmt_interval(row.valid), fmt_interval(row.test), fmt_interval(row.test_1hz), fmt_interval(row.fci),
            "—" if row.n_params is None else f"{row.n_params:,}",
            f"{row.complete}/{row.pruned}/{row.skipped}/{row.failed}/{row.pending}"
            + {"above": " †", "below": " ‡"}.get(row.settled or "", ""), f"{row.seconds:.0f}",
            "[green]yes[/green]" if row.passes else ("no" if row.test else "—"),
        )
    table.caption = ("trials: complete / pruned / skipped (a shallower depth passed, or the depth was settled: "
                     "† above, ‡ below the threshold on validation) / failed / waiting or running;\n"
                     "candidate: the depth's best trial on validation, scored once on the test split;\n"
                     "AUC at 1 Hz: the test split with whole simulations reweighted to a mean output rate of 1 Hz, "
                     "comparable across cells;\nFCI = log10(1000(1 − that AUC)) / 2: 1 at AUC 0.9, 0 at 0.999")
    print_whole_rows(table, console, 200)
    if report.scored:
        console.print("scored on " + "; ".join(
            f"{split}: {int(d['simulations'])} simulations, {int(d['spikes'])} output spikes, mean {d['rate_hz']:.2f} Hz"
            for split, d in report.scored.items()), highlight=False, soft_wrap=True)
    families = list(report.shallowest)
    if len(families) > 1:
        console.print(frontier_table(report, families))
    front = [p for p in report.points if p["front"]]
    if front:
        console.print(pareto_table(report, front))
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
        test_iv = winner.intervals.get("test", {})
        figures = ", ".join(
            f"{k} —" if v != v else  # undefined (the 1 Hz view of a split that never fires below 1 Hz)
            f"{k} {v:.4f}" + (f" [{test_iv[k][0]:.4f}, {test_iv[k][1]:.4f}]" if k in test_iv else "")
            for k, v in winner.test.items()
        )
        console.print(f"  on the test split (seen by no trial; 95% intervals over simulations): {figures}")
    else:
        console.print("  test split: not evaluated yet (run `neurosearch run` or `neurosearch report` with the config)")
    for record in report.learning_curves:
        console.print(escape(describe(LearningCurve(**record))))
