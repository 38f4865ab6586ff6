"""What a person looks at in the MLflow UI: plots, tables and files on the runs.

Per trial run: learning curves, the ROC curve, a predicted-vs-NEURON trace of one
held-out simulation, the architecture spec (JSON) and the saved model file.
Per study run: the depth-frontier plot, the metric against parameter count per depth
(the Pareto view), the summary table (CSV + Markdown), the report (JSON) and the
winner's test-split metrics.

Plots are drawn with matplotlib's object API on the Agg canvas (no pyplot state, so
threads and worker processes never share a figure), and logged with
``Tracker.log_artifacts`` against explicit run ids. Nothing here may cost a trial:
every public logging function is guarded by ``retry.never_fails`` (warns and returns None).
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from ..answer.metrics import METRICS, VOLTAGE_CEILING_MV
from ..answer.report import StudyReport, json_ready
from ..study.attrs import ATTR_REGISTERED_MODEL
from ..study.retry import never_fails
from .export import register_model, registered_name
from .tracker import Tracker

#: artifact file names, as the UI lists them
LEARNING_CURVES = "learning_curves.png"
ROC = "roc_curve.png"
TRACE = "voltage_trace.png"
SPEC = "spec.json"
FRONTIER = "depth_frontier.png"
PARETO = "pareto_params.png"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
WINNER_TEST = "winner_test_metrics.json"
REPORT_JSON = "report.json"
WEIGHTS = "weights"  # folder of a trial's saved model (spec + state dict + voltage scale)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


# --------------------------------------------------------------------------- trial plots


def plot_learning_curves(history: list, metric: str, threshold: float, title: str, path: Path) -> Path:
    """Training loss and validation metrics per epoch (``history``: trainer ``EpochResult``s)."""
    epochs = [row.epoch + 1 for row in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [row.train_loss for row in history], "o-", color="tab:blue")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss (BCE + w·MSE)")
    values = [row.metrics.get(metric, np.nan) for row in history]
    metric_ax.plot(epochs, values, "o-", color="tab:green", label=f"validation {metric}")
    if metric != "spike_auc":
        metric_ax.plot(epochs, [row.metrics.get("spike_auc", np.nan) for row in history], "s--", color="tab:olive",
                       label="validation spike_auc")
    metric_ax.axhline(threshold, color="tab:red", linestyle=":", label=f"target {threshold:g}")
    metric_ax.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    metric_ax.legend(loc="best", fontsize="small")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(title)
    return _save(fig, path)


def plot_roc(spike_prob: np.ndarray, spike_true: np.ndarray, title: str, path: Path) -> Path:
    """ROC of output-spike prediction over all validation bins."""
    truth = spike_true.reshape(-1).astype(bool)
    prob = spike_prob.reshape(-1)
    fig = Figure(figsize=(4.8, 4.6), layout="constrained")
    ax = fig.subplots()
    if truth.any() and not truth.all():
        fpr, tpr, _ = roc_curve(truth, prob)
        ax.plot(fpr, tpr, color="tab:blue", label=f"AUC {roc_auc_score(truth, prob):.4f}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "undefined: no spikes (or only spikes)", ha="center", va="center")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=f"{title}\nspike prediction, 1 ms bins ({truth.size:,} bins, {int(truth.sum())} spikes)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_trace(
    v_true: np.ndarray, v_pred: np.ndarray, spike_prob: np.ndarray, spike_true: np.ndarray, start_ms: int,
    title: str, path: Path,
) -> Path:
    """One held-out simulation: NEURON vs predicted somatic voltage; predicted spike probability."""
    t = start_ms + np.arange(v_true.shape[-1])
    fig = Figure(figsize=(11, 5), layout="constrained")
    v_ax, p_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    v_ax.plot(t, v_true, color="black", linewidth=0.8, label=f"NEURON (spikes clipped at {VOLTAGE_CEILING_MV:g} mV)")
    v_ax.plot(t, v_pred, color="tab:orange", linewidth=0.8, alpha=0.9, label="network")
    v_ax.set(ylabel="somatic voltage (mV)", title=title)
    v_ax.legend(loc="upper right", fontsize="small")
    p_ax.plot(t, spike_prob, color="tab:blue", linewidth=0.8, label="predicted spike probability")
    spikes = t[spike_true.astype(bool)]
    if spikes.size:
        p_ax.vlines(spikes, 1.02, 1.12, color="black", linewidth=1.0, label="NEURON spikes")
    p_ax.set(xlabel="time (ms)", ylabel="P(spike)", ylim=(-0.02, 1.15))
    p_ax.legend(loc="center right", fontsize="small")
    for ax in (v_ax, p_ax):
        ax.grid(alpha=0.3)
    return _save(fig, path)


@never_fails("logging the trial's artifacts to MLflow")
def log_trial_artifacts(
    tracker: Tracker, run_id: str, trainer: Any, spec: dict, metric: str, threshold: float,
    title: str, model_file: Path | None = None,
) -> list[str]:
    """Plots and files of one trial's run. With ``model_file`` (a finished trial) also the
    ROC curve and trace on held-out validation simulations and the saved model
    (``weights/trial-<n>.pt``, what ``workspace.load_model`` reads); without
    (a pruned trial) only the learning curves and the spec."""
    logged: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / SPEC).write_text(json.dumps(spec, indent=2))
        files = [folder / SPEC]
        if trainer.history:
            files.append(plot_learning_curves(trainer.history, metric, threshold, title, folder / LEARNING_CURVES))
        if model_file is not None:
            valid = trainer.valid_data
            pred = trainer.predict(valid)
            files.append(plot_roc(pred.spike_prob, pred.spike_true, title, folder / ROC))
            burn = trainer.settings.burn_in_ms
            files.append(plot_trace(
                pred.v_true[0], pred.v_pred[0], pred.spike_prob[0], pred.spike_true[0], burn,
                f"{title}: held-out (validation) simulation {valid.sim_ids[0]}", folder / TRACE,
            ))
        tracker.log_artifacts(run_id, files)
        logged += [file.name for file in files]
    if model_file is not None and Path(model_file).exists():
        tracker.log_artifacts(run_id, [Path(model_file)], WEIGHTS)
        logged.append(Path(model_file).name)
    return logged


# --------------------------------------------------------------------------- study artifacts


def plot_frontier(report: StudyReport, path: Path) -> Path:
    """Best validation metric against depth, one line per family, the target as a line;
    filled markers pass, the winner is starred."""
    metric = METRICS[report.metric]
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    families = sorted({row.family for row in report.rows})
    colours = dict(zip(families, ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")))
    for family in families:
        rows = [r for r in report.rows if r.family == family and r.best is not None]
        if not rows:
            continue
        colour = colours.get(family)
        depths, best = [r.depth for r in rows], [r.best for r in rows]
        ax.plot(depths, best, "-", color=colour, label=family)
        ax.scatter(depths, best, color=[colour if r.passes else "white" for r in rows], edgecolors=colour, zorder=3,
                   s=45)
    op = "≥" if metric.higher_is_better else "≤"
    ax.axhline(report.threshold, color="tab:red", linestyle="--", label=f"target {report.metric} {op} {report.threshold:g}")
    if report.winner is not None:
        ax.scatter([report.winner.depth], [report.winner.value], marker="*", s=260, color="gold", edgecolors="black",
                   zorder=4, label=f"winner: trial {report.winner.trial} ({report.winner.family} depth {report.winner.depth})")
    depths = sorted({row.depth for row in report.rows})
    if depths:
        ax.set_xticks(depths)
    ax.set(xlabel="depth (hidden nonlinear layers on the longest path)", ylabel=f"best validation {report.metric}",
           title=f"study {report.study}: depth frontier (filled = passes)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_pareto(report: StudyReport, path: Path) -> Path:
    """Validation metric against parameter count, every trial: a colour per depth, a marker
    per family, each depth's Pareto front joined, the target as a line, the winner starred."""
    metric = METRICS[report.metric]
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    depths = sorted({p["depth"] for p in report.points})
    markers = dict(zip(sorted({p["family"] for p in report.points}), "osD^v<>"))
    cmap = matplotlib_colormap("viridis", max(len(depths), 2))
    for k, depth in enumerate(depths):
        colour = cmap(k)
        here = [p for p in report.points if p["depth"] == depth]
        for family, marker in markers.items():
            mine = [p for p in here if p["family"] == family]
            if mine:
                ax.scatter([p["n_params"] for p in mine], [p["value"] for p in mine], marker=marker, color=colour,
                           alpha=0.75, s=36, label=f"depth {depth}, {family}")
        front = sorted((p for p in here if p["front"]), key=lambda p: p["n_params"])
        ax.step([p["n_params"] for p in front], [p["value"] for p in front], where="post", color=colour, linewidth=1)
    op = "≥" if metric.higher_is_better else "≤"
    ax.axhline(report.threshold, color="tab:red", linestyle="--", label=f"target {report.metric} {op} {report.threshold:g}")
    winner = report.winner
    if winner is not None and winner.n_params:
        ax.scatter([winner.n_params], [winner.value], marker="*", s=260, color="gold", edgecolors="black", zorder=4,
                   label=f"winner: trial {winner.trial}")
    ax.set_xscale("log")
    ax.set(xlabel="parameters", ylabel=f"best validation {report.metric}",
           title=f"study {report.study}: {report.metric} against size\n(colour: depth; lines: each depth's Pareto front)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="x-small")
    return _save(fig, path)


def matplotlib_colormap(name: str, n: int):
    """``n`` evenly spaced colours of a matplotlib colormap."""
    from matplotlib import colormaps

    return colormaps[name].resampled(n)


COLUMNS = ("family", "depth", "best", "best_trial", "n_params", "candidate", "valid", "valid_low", "valid_high",
           "test", "test_low", "test_high", "test_auc_1hz", "test_auc_1hz_low", "test_auc_1hz_high",
           "fci", "fci_low", "fci_high", "complete", "pruned", "skipped", "failed", "pending", "train_seconds",
           "passes")


def summary_rows(report: StudyReport) -> list[dict[str, Any]]:
    """One row per family and depth; ``valid``/``test`` are the depth's candidate with its 95% interval."""
    rows = []
    for r in report.rows:
        valid, test = r.valid or [None] * 3, r.test or [None] * 3
        at_1hz, fci = r.test_1hz or [None] * 3, r.fci or [None] * 3
        rows.append(
            {"family": r.family, "depth": r.depth, "best": r.best, "best_trial": r.best_trial, "n_params": r.n_params,
             "candidate": r.candidate, "valid": valid[0], "valid_low": valid[1], "valid_high": valid[2],
             "test": test[0], "test_low": test[1], "test_high": test[2],
             "test_auc_1hz": at_1hz[0], "test_auc_1hz_low": at_1hz[1], "test_auc_1hz_high": at_1hz[2],
             "fci": fci[0], "fci_low": fci[1], "fci_high": fci[2],
             "complete": r.complete, "pruned": r.pruned, "skipped": r.skipped, "failed": r.failed, "pending": r.pending,
             "train_seconds": round(r.seconds, 1), "passes": r.passes}
        )
    return rows


def write_summary_csv(report: StudyReport, path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(summary_rows(report))
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def write_summary_markdown(report: StudyReport, path: Path) -> Path:
    metric = METRICS[report.metric]
    op = "≥" if metric.higher_is_better else "≤"
    header = [c if c != "best" else f"best {report.metric}" for c in COLUMNS]
    lines = [
        f"# Study {report.study}: best validation {report.metric} per depth (target {op} {report.threshold:g})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |" for row in summary_rows(report)]
    lines.append("")
    for family, depth in report.shallowest.items():
        lines.append(f"- **{family}**: " + (f"shallowest passing depth **{depth}**" if depth is not None
                                             else "no depth meets the target"))
    winner = report.winner
    if winner is not None:
        label = "Shallowest passing network" if winner.passes else "No network met the target; best network"
        lines += ["", f"{label}: trial {winner.trial}, {winner.family} depth {winner.depth}, "
                      f"{winner.n_params or 0:,} parameters, validation {report.metric} {winner.value:.4f}."]
        if winner.test:
            lines.append("On the test split (seen by no trial): "
                         + ", ".join(f"{k} {v:.4f}" for k, v in winner.test.items()) + ".")
    path.write_text("\n".join(lines) + "\n")
    return path


@never_fails("logging the study's artifacts to MLflow")
def log_study_artifacts(tracker: Tracker, run_id: str, report: StudyReport) -> list[str]:
    """Depth frontier, metric against size (the Pareto view), summary table (CSV + Markdown), report JSON and the winner's
    test-split metrics on the study run (re-logged, i.e. replaced, on every report)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = [
            plot_frontier(report, folder / FRONTIER),
            *([plot_pareto(report, folder / PARETO)] if report.points else []),
            write_summary_csv(report, folder / SUMMARY_CSV),
            write_summary_markdown(report, folder / SUMMARY_MD),
        ]
        (folder / REPORT_JSON).write_text(report.to_json())
        files.append(folder / REPORT_JSON)
        if report.winner is not None and report.winner.test:
            winner = report.winner
            (folder / WINNER_TEST).write_text(json.dumps(json_ready(
                {"trial": winner.trial, "family": winner.family, "depth": winner.depth, "passes": winner.passes,
                 "validation": {report.metric: winner.value}, "test": winner.test,
                 "intervals_95": winner.intervals}), indent=2, allow_nan=False))
            files.append(folder / WINNER_TEST)
        tracker.log_artifacts(run_id, files)
        return [file.name for file in files]


# --------------------------------------------------------------------------- registry


@never_fails("registering the winner in MLflow's model registry")
def register_winner(tracker: Tracker, run_id: str, report: StudyReport, study: Any, model_file: Path,
                    fixed_length: int) -> str | None:
    """The report's winner as a new version of ``<study>-surrogate`` in the MLflow model
    registry (once per winner: a resumed study whose winner did not change adds nothing)."""
    winner = report.winner
    if winner is None or not Path(model_file).exists():
        return None
    done = study.user_attrs.get(ATTR_REGISTERED_MODEL) or {}
    if done.get("trial") == winner.trial:
        return str(done.get("version"))
    name = registered_name(report.study)
    tags = {"optuna.study": report.study, "optuna.trial": winner.trial, "family": winner.family,
            "depth": winner.depth, "n_params": winner.n_params, "passes": winner.passes,
            f"val_{report.metric}": f"{winner.value:.6f}",
            **{f"test_{k}": f"{v:.6f}" for k, v in (winner.test or {}).items()}}
    # one folder per registered trial: a later winner never overwrites an earlier version's files
    version = register_model(tracker, run_id, Path(model_file), name, tags, fixed_length,
                             artifact_path=f"model-trial-{winner.trial}")
    study.set_user_attr(ATTR_REGISTERED_MODEL, {"name": name, "version": version, "trial": winner.trial})
    tracker.set_tags(run_id, {"registered_model": name, "registered_model_version": version})
    return version


def log_study(tracker: Tracker, run_id: str, report: StudyReport, study: Any, model_file: Path | None,
              fixed_length: int) -> None:
    """Everything the study run shows: frontier, tables, winner metrics, registered winner."""
    log_study_artifacts(tracker, run_id, report)
    if model_file is not None:
        register_winner(tracker, run_id, report, study, model_file, fixed_length)
