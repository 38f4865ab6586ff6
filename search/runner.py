"""`neurosearch run` end to end: dataset → study → trials → test confirmation per depth →
learning curve where nothing passes → report.

Creating and resuming are the same call: the dataset comes from its cache, the
study from its storage, and only the planned trials not yet finished are run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from neurosearch.simulators import Dataset, generate

from .answer import learning_curve
from .answer.confirm import confirm_depth, confirmations, depth_finished
from .answer.metrics import METRICS
from .answer.report import StudyReport, build_report, learning_curve_key, render
from .answer.settle import ABOVE, settle, settlement
from .config import Config
from .errors import UserError, mask_url
from .folders import writable_folder
from .preflight import preflight
from .study.attrs import (
    ATTR_DATASET_HASH,
    ATTR_DATASET_PATH,
    ATTR_DATASET_SUMMARY,
    ATTR_FAIL_REASON,
    ATTR_MLFLOW_RUN_ID,
    ATTR_PLANNED_TRIALS,
    ATTR_PRUNE_REASON,
    ATTR_RESUMED_EPOCHS,
    ATTR_SKIP_REASON,
)
from .study.plan import enqueue_plan, open_study, record_study_attrs, run_worker, unfinished
from .study.setup_lock import study_lock
from .study.workspace import Workspace, study_uid
from .tracking.artifacts import log_study
from .tracking.tracker import Tracker
from .training.objective import StudyContext, make_objective


def print_rates(dataset: Dataset, console: Console) -> None:
    """How the ground truth fires, and a warning when it misses the calibrated mean rate."""
    console.print(escape(dataset.rate_summary()), highlight=False, soft_wrap=True)
    warning = dataset.rate_warning()
    if warning:
        console.print(f"[yellow]{escape(warning)}[/yellow]", highlight=False, soft_wrap=True)


def simulate(config: Config, progress: bool = True) -> Dataset:
    """The study's ground-truth dataset: the imported one ``[data] dataset`` names, or the
    simulated one, generated once and then read from the cache (``generate`` locks it: of
    workers started together, the first generates and the others find the cache)."""
    if config.data.dataset is not None:
        return open_imported(config)
    return generate(config.simulator, writable_folder(Workspace.of(config).datasets, "work_dir's dataset folder"),
                    progress=progress)


def open_imported(config: Config) -> Dataset:
    """The dataset ``[data] dataset`` names, checked against its checksums and long enough
    for the training window."""
    path = config.data.dataset
    if not (path / "manifest.json").is_file():
        raise UserError(f"[data] dataset {path} is not a dataset folder (no manifest.json): make one with "
                        "`neurosearch import`")
    dataset = Dataset.open(path)
    if dataset.duration_ms <= config.training.window_ms:
        raise UserError(f"[data] dataset {path.name} holds {dataset.duration_ms} ms per simulation, not longer than "
                        f"training.window_ms ({config.training.window_ms}): lower window_ms")
    return dataset


def _study_run(study: optuna.Study, tracker: Tracker, config: Config) -> str:
    """The MLflow study run id, shared by all workers through the study's attributes
    (created by the first worker to hold the set-up lock)."""
    run_id = study.user_attrs.get(ATTR_MLFLOW_RUN_ID)
    if run_id is None:
        params = config.model_dump(mode="json")  # the tracker masks every URL's password
        run_id = tracker.create_study_run(config.study.name, config.study.storage, params)
        study.set_user_attr(ATTR_MLFLOW_RUN_ID, run_id)
    return run_id


def set_up_study(config: Config, storage: RDBStorage, tracker: Tracker,
                 dataset_attrs: dict[str, Any]) -> tuple[optuna.Study, bool, str, int]:
    """Create or join the study and do its shared set-up (the MLflow study run, the
    study's attributes, the plan) under its set-up lock: of workers started together,
    one sets it up and the others find it done. Returns (study, created here, MLflow
    study run id, trials enqueued here)."""
    with study_lock(config.study.storage, config.study.name):
        study, created = open_study(config, storage, dataset_attrs)
        parent = _study_run(study, tracker, config)
        record_study_attrs(study, config, dataset_attrs)
        added = enqueue_plan(study, config)
    return study, created, parent, added


def prepare(config: Config, console: Console, progress: bool = True,
            json_out: Path | None = None) -> tuple[optuna.Study, StudyContext]:
    """Check everything that can fail in seconds (``preflight``), then spend the minutes:
    the dataset, then the study."""
    ready = preflight(config, json_out)
    storage, tracker, device = ready.storage, ready.tracker, ready.device
    dataset = simulate(config, progress=progress)
    dataset_attrs: dict[str, Any] = {ATTR_DATASET_HASH: dataset.config_hash, ATTR_DATASET_PATH: str(dataset.path),
                                     ATTR_DATASET_SUMMARY: dataset.summary()}
    study, created, parent, added = set_up_study(config, storage, tracker, dataset_attrs)
    verb = "created" if created else "resumed"
    console.print(
        f"study [bold]{escape(config.study.name)}[/bold] {verb} on {escape(mask_url(config.study.storage))}"
        f" ({added} trials planned now); dataset {dataset.path.name[:12]} ({len(dataset)} simulations,"
        f" {dataset.n_inputs} inputs); training on {device}"
    )
    print_rates(dataset, console)
    return study, StudyContext(config, dataset, device, tracker, parent, study_uid(study))


def run(config: Config, console: Console, progress: bool = True, json_out: Path | None = None) -> StudyReport:
    """Run (or resume) the study to the end of its plan, then confirm and report (``json_out``:
    where the caller will write it as JSON, checked before anything runs)."""
    study, ctx = prepare(config, console, progress, json_out)
    planned = int(study.user_attrs.get(ATTR_PLANNED_TRIALS, 0))
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, disable=not progress, transient=False,
    )
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    with bar:
        done = len(study.get_trials(deepcopy=False, states=finished))
        trials_task = bar.add_task("trials", total=planned, completed=done)
        steps_task = bar.add_task("training", total=1, visible=False)

        def on_start(label: str) -> None:
            bar.update(steps_task, description=label, completed=0, visible=True)

        def on_step(step: int, total: int) -> None:
            bar.update(steps_task, completed=step, total=total)

        def on_done(trial: FrozenTrial) -> None:
            bar.update(trials_task, completed=len(study.get_trials(deepcopy=False, states=finished)))
            value = "—" if trial.value is None else f"{trial.value:.4f}"
            # a retry inherits its dead attempt's user attrs: show a reason only for its own state
            reason = {
                TrialState.PRUNED: trial.user_attrs.get(ATTR_SKIP_REASON) or trial.user_attrs.get(ATTR_PRUNE_REASON),
                TrialState.FAIL: trial.user_attrs.get(ATTR_FAIL_REASON),
            }.get(trial.state) or ""
            retry_of = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
            if retry_of is not None and trial.state != TrialState.FAIL:
                reason = f"(retry of trial {retry_of}, resumed after "
                reason += f"{trial.user_attrs.get(ATTR_RESUMED_EPOCHS, 0)} epoch(s))"
            # a skipped slot is stored as FAIL (the sampler must not learn from it), but is not a failure
            skipped = trial.state == TrialState.FAIL and ATTR_SKIP_REASON in trial.user_attrs
            outcome = ("SKIPPED " + trial.user_attrs[ATTR_SKIP_REASON] if skipped
                       else f"{trial.state.name} {config.target.metric}={value} {reason}")
            bar.console.print(
                f"trial {trial.number} {trial.params.get('family')} depth {trial.params.get('depth')}: "
                f"{escape(outcome)}".rstrip()
            )
            _settle_or_confirm(study, ctx, trial, bar.console)

        def on_wait(running: int) -> None:
            bar.update(steps_task, description=f"waiting for {running} trial(s) running elsewhere", visible=True)

        objective = make_objective(ctx, on_step=on_step, on_start=on_start)
        run_worker(study, objective, poll_s=min(5.0, config.study.heartbeat_s), on_wait=on_wait, on_done=on_done)
    report = conclude(study, ctx, console)
    render(report, console)
    problem = unfinished(study)
    if problem is not None:  # a run that leaves work undone must not look like a success
        raise UserError(problem)
    return report


def _settle_or_confirm(study: optuna.Study, ctx: StudyContext, trial: FrozenTrial, console: Console) -> None:
    """After a trial of a depth: is the depth's answer settled (answer/settle.py)? Once it
    is settled as passing, or its last planned trial has finished, score its candidate on
    test: a confirmed pass is what lets deeper slots of the family be skipped."""
    family, depth = trial.params.get("family"), trial.params.get("depth")
    if family is None:
        return
    finished = depth_finished(study, family, depth)
    before = settlement(study, family, depth)
    # a finished depth has nothing left to stop: it goes to test as it is
    settled = before if finished else settle(ctx, study, family, depth)
    metric, threshold = ctx.config.target.metric, ctx.config.target.threshold
    if settled is not None and settled.settled and not (before is not None and before.settled):
        console.print(escape(settled.reason(metric, threshold)) + ": its remaining trials are skipped",
                      highlight=False, soft_wrap=True)
    if not (finished or (settled is not None and settled.verdict == ABOVE)):
        return
    seen = confirmations(study).get((family, depth))
    record = confirm_depth(ctx, study, family, depth)
    if record is not None and record != seen:
        value, low, high = record.test[metric]
        console.print(f"{family} depth {depth}: candidate trial {record.trial} on the test split {metric} "
                      f"{value:.4f} [{low:.4f}, {high:.4f}] → {'passes' if record.passes else 'does not pass'}")


def conclude(study: optuna.Study, ctx: StudyContext, console: Console | None = None) -> StudyReport:
    """Confirm every finished depth not confirmed yet, measure the learning curve of the
    depth closest to the target where no family passes (``study.learning_curve``), and
    log the answer on the study run."""
    slots = {(t.params["family"], t.params["depth"]) for t in study.get_trials(deepcopy=False) if "family" in t.params}
    for family, depth in sorted(slots):
        if depth_finished(study, family, depth):
            confirm_depth(ctx, study, family, depth)
    if ctx.config.study.learning_curve:
        _learning_curves(study, ctx, console)
    report = build_report(study)
    metric = ctx.config.target.metric
    figures: dict[str, float] = {}
    for row in report.rows:
        if row.best is not None:
            figures[f"best_{row.family}_depth{row.depth}"] = row.best
        for name, figure in ((f"valid_{metric}", row.valid), (f"test_{metric}", row.test),
                             ("test_spike_auc_1hz", row.test_1hz), ("test_fci", row.fci)):
            if figure:
                for suffix, value in zip(("", "_low", "_high"), figure):
                    figures[f"{name}_{row.family}_depth{row.depth}{suffix}"] = value
    ctx.tracker.log_metrics(ctx.parent_run_id, figures)
    winner = report.winner
    if winner is not None and winner.test:
        test_iv = winner.intervals.get("test", {})
        ctx.tracker.log_metrics(ctx.parent_run_id, {
            **{f"test_{k}": v for k, v in winner.test.items()},
            **{f"test_{k}_low": iv[0] for k, iv in test_iv.items()},
            **{f"test_{k}_high": iv[1] for k, iv in test_iv.items()},
        })
        ctx.tracker.set_tags(
            ctx.parent_run_id,
            {"winner_trial": winner.trial, "winner_family": winner.family, "winner_depth": winner.depth,
             "winner_passes": winner.passes},
        )
    # frontier plot, summary table, winner's test metrics, winner in the model registry (never raises)
    log_study(ctx.tracker, ctx.parent_run_id, report, study,
              ctx.workspace.model(winner.trial) if winner is not None else None, ctx.dataset.duration_ms)
    return report


def _learning_curves(study: optuna.Study, ctx: StudyContext, console: Console | None) -> None:
    """Where no family passes: the learning curve of the depth closest to the target (the
    best confirmed candidate on validation, of any family), which says how much ground
    truth the cheapest pass would need. One curve, not one per family: each costs about
    a trial's training again, and the others would each need at least as much data to
    pass unless their curves are steeper (``neurosearch`` can measure any family's by
    running a study of that family alone)."""
    confirmed = confirmations(study)
    metric = ctx.config.target.metric
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    records = [c for (fam, _), c in confirmed.items() if fam in ctx.config.study.families and metric in c.valid]
    if not records or any(c.passes for c in records):
        return
    best = max(records, key=lambda c: sign * c.valid[metric][0])
    key = learning_curve_key(best.family, best.depth)
    stored = study.user_attrs.get(key)
    if isinstance(stored, dict) and stored.get("trial") == best.trial and "margin" in stored:
        return  # measured already (a curve stored before margins existed is measured again)
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == best.trial)
    if console is not None:
        console.print(f"no family passes; measuring the closest, {best.family} depth {best.depth}'s learning curve "
                      f"(trial {best.trial} retrained on 1/8, 1/4 and 1/2 of the training split)")
    value, low, high = best.test[metric]
    curve = learning_curve.measure(ctx, trial, margin=abs(value - (low if sign > 0 else high)))
    study.set_user_attr(key, curve.to_dict())
