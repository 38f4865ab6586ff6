"""Several studies read side by side: which cell needs the deeper network.

The question Aizenbud et al. asked of 24 cells (docs/DESIGN.md, "Cells side by side"):
the same search run on several cells, each study's answer per family (shallowest passing
depth; per depth the candidate's test AUC, its AUC on the 1 Hz view and the Functional
Complexity Index, with intervals; parameters) and what each study cost (training seconds,
trials, NEURON core-seconds for its dataset). Built from the studies' storages alone, like
``report``; one table, one JSON document, one figure.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from rich.console import Console
from rich.table import Table

from ..errors import UserError, mask_url
from ..study.attrs import ATTR_DATASET_SUMMARY
from .report import StudyReport, build_report, fmt_interval, json_ready, print_whole_rows

if TYPE_CHECKING:
    from ..study.reader import StoredStudy


@dataclass
class DepthFigures:
    depth: int
    candidate: int | None
    n_params: int | None
    test: list[float] | None  # [value, low, high] of the target metric
    test_1hz: list[float] | None
    fci: list[float] | None
    passes: bool


@dataclass
class CellFamily:
    """One study's answer for one family, with what the study cost."""

    study: str
    storage: str  # masked URL
    threshold: float  # the study's target: what "passes" means in this row
    cell: str | None  # the simulated model, as the study recorded it (None: recorded before cells were)
    family: str
    shallowest: int | None
    depths: list[DepthFigures]
    train_s: float  # this family's trials, summed
    trials: int  # this family's finished or pruned trials
    neuron_core_s: float | None  # the whole dataset's NEURON cost (shared by the study's families)
    test_rate_hz: float | None  # what the test AUC means: the test split's mean output rate


@dataclass
class Comparison:
    metric: str
    rows: list[CellFamily] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(json_ready(asdict(self)), indent=2, allow_nan=False)


def cell_rows(report: StudyReport, storage: str, attrs: dict[str, Any]) -> list[CellFamily]:
    """``report``'s answer per family, with the dataset the study recorded (``attrs``)."""
    dataset = attrs.get(ATTR_DATASET_SUMMARY) or {}
    rows = []
    for family, shallowest in report.shallowest.items():
        mine = [r for r in report.rows if r.family == family]
        rows.append(CellFamily(
            study=report.study, storage=mask_url(storage), threshold=report.threshold, cell=dataset.get("cell"),
            family=family, shallowest=shallowest,
            depths=[DepthFigures(r.depth, r.candidate, r.n_params, r.test, r.test_1hz, r.fci, r.passes) for r in mine],
            train_s=sum(r.seconds for r in mine), trials=sum(r.complete + r.pruned for r in mine),
            neuron_core_s=dataset.get("neuron_core_s"), test_rate_hz=(report.scored.get("test") or {}).get("rate_hz"),
        ))
    return rows


def compare(studies: list[tuple[optuna.Study | StoredStudy, str]]) -> Comparison:
    """The studies (each with its storage URL) side by side. They must share the target
    metric (a column of AUCs beside RMSEs would compare nothing); each row keeps its own
    study's threshold."""
    reports = [(build_report(study), study.user_attrs, url) for study, url in studies]
    metrics = {r.metric for r, _, _ in reports}
    if len(metrics) > 1:
        raise UserError("the studies' targets are different metrics (" + "; ".join(
            f"{r.study}: {r.metric}" for r, _, _ in reports) + "): compare studies of one metric")
    result = Comparison(metrics.pop())
    for report, attrs, url in reports:
        result.rows.extend(cell_rows(report, url, attrs))
    return result


def _defined(figure: list[float] | None) -> bool:
    return bool(figure) and figure[0] == figure[0]  # NaN: the 1 Hz view of a split that never fires below 1 Hz




def _hours(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 3600:.3g}"


def render(comparison: Comparison, console: Console) -> None:
    """One table: a block of rows per (study, family), a row per depth."""
    table = Table(title=f"cells side by side: {comparison.metric} per depth "
                        "(a depth passes when its test 95% bound clears the study's target)")
    columns = ("study", "cell", "family", "target", "shallowest", "depth", f"test {comparison.metric} [95% CI]",
               "at 1 Hz [95% CI]", "FCI [95% CI]", "params", "passes", "test Hz", "trials", "train h", "NEURON core-h")
    for column in columns:
        table.add_column(column, justify="left" if column in ("study", "cell", "family") else "right", no_wrap=True)
    for block in comparison.rows:
        head = [block.study, block.cell or "—", block.family, f"{block.threshold:g}",
                "none" if block.shallowest is None else str(block.shallowest)]
        cost = ["—" if block.test_rate_hz is None else f"{block.test_rate_hz:.2f}", str(block.trials),
                _hours(block.train_s), _hours(block.neuron_core_s)]
        for i, d in enumerate(block.depths or [None]):
            figures = (["—"] * 6 if d is None else
                       [str(d.depth), fmt_interval(d.test), fmt_interval(d.test_1hz), fmt_interval(d.fci),
                        "—" if d.n_params is None else f"{d.n_params:,}",
                        "[green]yes[/green]" if d.passes else ("no" if d.test else "—")])
            table.add_row(*(head if i == 0 else [""] * len(head)), *figures, *(cost if i == 0 else [""] * 4),
                          end_section=d is None or d is block.depths[-1])
    table.caption = ("shallowest: the shallowest depth whose candidate's test bound clears the target; "
                     "at 1 Hz: test AUC with whole simulations reweighted to a mean output rate of 1 Hz (comparable "
                     "across cells); FCI = log10(1000(1 − that AUC)) / 2; test Hz: the test split's mean output rate; "
                     "cost: the study's training hours per family and NEURON core-hours for its dataset")
    print_whole_rows(table, console, 320)
    for block in comparison.rows:
        answer = (f"shallowest passing depth {block.shallowest}" if block.shallowest is not None
                  else "no depth passes")
        console.print(f"{block.study} ({block.cell or 'cell not recorded'}), {block.family}: {answer}",
                      highlight=False, soft_wrap=True)


def figure(comparison: Comparison, path: Path) -> Path:
    """AUC (with the threshold) and FCI against depth, a line per (study, family), with
    95% intervals as error bars: the side-by-side answer as one picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (auc_ax, fci_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for block in comparison.rows:
        label = f"{block.study} ({block.cell or '?'}) {block.family}"
        for ax, key in ((auc_ax, "test"), (fci_ax, "fci")):
            points = [(d.depth, getattr(d, key)) for d in block.depths if _defined(getattr(d, key))]
            if not points:
                continue
            depths = [p for p, _ in points]
            values = [f[0] for _, f in points]
            errors = [[f[0] - f[1] for _, f in points], [f[2] - f[0] for _, f in points]]
            ax.errorbar(depths, values, yerr=errors, marker="o", capsize=3, label=label)
    if not fci_ax.lines:
        fci_ax.text(0.5, 0.5, "undefined: no test split has simulations\nfiring below 1 Hz to reweight",
                    ha="center", va="center", transform=fci_ax.transAxes, color="grey")
    for threshold in sorted({block.threshold for block in comparison.rows}):
        auc_ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"target {threshold:g}")
    auc_ax.set(xlabel="depth", ylabel=f"test {comparison.metric} (95% CI)", title="accuracy per depth")
    fci_ax.set(xlabel="depth", ylabel="FCI (95% CI; lower = simpler)", title="Functional Complexity Index per depth")
    for ax in (auc_ax, fci_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    auc_ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: The MLflow experiment that holds every side-by-side comparison of a tracking store
COMPARISONS_EXPERIMENT = "neurosearch comparisons"


def log_comparison(comparison: Comparison, uri: str, artifact_root: str) -> str:
    """One finished MLflow run holding the comparison: per (study, family) its shallowest
    passing depth and per depth the test AUC and FCI as metrics (``step`` = depth), the
    table as JSON and the figure. Returns where to find it."""
    import tempfile

    from optuna.trial import TrialState

    from ..tracking.tracker import Tracker

    tracker = Tracker(uri, artifact_root, COMPARISONS_EXPERIMENT)
    studies = sorted({block.study for block in comparison.rows})
    run_id = tracker.create_run(f"cells: {', '.join(studies)}", {"neurosearch.kind": "comparison",
                                                                 "optuna.studies": ", ".join(studies)})
    tracker.log_params(run_id, {"metric": comparison.metric,
                                "studies": [f"{b.study}@{b.storage} (target {b.threshold:g})" for b in comparison.rows]})
    for block in comparison.rows:
        key = re.sub(r"[^\w\-. /]", "_", f"{block.study}.{block.family}")  # the characters MLflow allows in a name
        tracker.log_metrics(run_id, {f"{key}.shallowest": block.shallowest if block.shallowest is not None else float("nan"),
                                     f"{key}.train_h": block.train_s / 3600})
        for d in block.depths:
            figures = {f"{key}.test_{comparison.metric}": d.test, f"{key}.fci": d.fci}
            tracker.log_metrics(run_id, {name: f[0] for name, f in figures.items() if f}, step=d.depth)
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder, "comparison.json")
        table.write_text(comparison.to_json())
        tracker.log_artifacts(run_id, [table, figure(comparison, Path(folder, "comparison.png"))])
    tracker.end_run(run_id, TrialState.COMPLETE)
    return f"experiment {COMPARISONS_EXPERIMENT!r}, run {run_id} in {mask_url(uri)}"
