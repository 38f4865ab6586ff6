"""`neurosearch run` end to end: dataset → study → trials → test confirmation → report.

Creating and resuming are the same call: the dataset comes from its cache, the
study from its storage, and only the planned trials not yet finished are run.
"""

from __future__ import annotations

import fcntl
import time
from typing import Any

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from neurosearch.simulators import Dataset, generate

from .config import Config
from .artifacts import log_study
from .objective import StudyContext, confirm_on_test, make_objective
from .report import StudyReport, build_report, render, test_attr
from .study import enqueue_plan, open_storage, open_study, record_study_attrs, run_worker
from .tracking import Tracker, mask_url
from .train import resolve_device


def simulate(config: Config, progress: bool = True) -> Dataset:
    """The study's ground-truth dataset, generated once and then read from the cache.

    Workers started together on a shared folder take turns on a file lock: the first
    generates, the others find the cache.
    """
    cache = config.study.work_dir / "datasets"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{config.simulator.config_hash()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return generate(config.simulator, cache, progress=progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _study_run(study: optuna.Study, tracker: Tracker, config: Config, created: bool) -> str:
    """The MLflow study run id, shared by all workers through the study's attributes."""
    run_id = study.user_attrs.get("mlflow_run_id")
    if run_id is None and not created:  # the creating worker may be setting it right now
        for _ in range(20):
            time.sleep(0.5)
            run_id = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs.get("mlflow_run_id")
            if run_id:
                break
    if run_id is None:
        params = config.model_dump(mode="json", exclude={"study": {"storage"}})
        params["study"]["storage"] = mask_url(config.study.storage)
        run_id = tracker.create_study_run(config.study.name, config.study.storage, params)
        study.set_user_attr("mlflow_run_id", run_id)
    return run_id


def prepare(config: Config, console: Console, progress: bool = True) -> tuple[optuna.Study, StudyContext]:
    dataset = simulate(config, progress=progress)
    storage = open_storage(config)
    dataset_attrs: dict[str, Any] = {"dataset_hash": dataset.config_hash, "dataset_path": str(dataset.path)}
    study, created = open_study(config, storage, dataset_attrs)
    tracker = Tracker(config.tracking.uri, config.tracking.artifacts, config.experiment_name)
    parent = _study_run(study, tracker, config, created)
    record_study_attrs(study, config, dataset_attrs)
    added = enqueue_plan(study, config)
    device = resolve_device(config.training.device)
    verb = "created" if created else "resumed"
    console.print(
        f"study [bold]{config.study.name}[/bold] {verb} on {mask_url(config.study.storage)}"
        f" ({added} trials planned now); dataset {dataset.path.name[:12]} ({len(dataset)} simulations,"
        f" {dataset.n_inputs} inputs); training on {device}"
    )
    return study, StudyContext(config, dataset, device, tracker, parent)


def run(config: Config, console: Console, progress: bool = True) -> StudyReport:
    """Run (or resume) the study to the end of its plan, then confirm and report."""
    study, ctx = prepare(config, console, progress)
    planned = int(study.user_attrs.get("planned_trials", 0))
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, disable=not progress, transient=False,
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    with bar:
        done = len(study.get_trials(deepcopy=False, states=finished))
        trials_task = bar.add_task("trials", total=planned, completed=done)
        steps_task = bar.add_task("training", total=1, visible=False)

        def on_start(label: str) -> None:
            bar.update(steps_task, description=label, completed=0, visible=True)

        def on_step(step: int, total: int) -> None:
            bar.update(steps_task, completed=step, total=total)

        def on_done(trial: optuna.trial.FrozenTrial) -> None:
            bar.update(trials_task, completed=len(study.get_trials(deepcopy=False, states=finished)))
            value = "—" if trial.value is None else f"{trial.value:.4f}"
            # a retry inherits its dead attempt's user attrs: show a reason only for its own state
            reason = {
                optuna.trial.TrialState.PRUNED: trial.user_attrs.get("skip_reason") or trial.user_attrs.get("prune_reason"),
                optuna.trial.TrialState.FAIL: trial.user_attrs.get("fail_reason"),
            }.get(trial.state) or ""
            if trial.system_attrs.get("failed_trial") is not None and trial.state != optuna.trial.TrialState.FAIL:
                reason = f"(retry of trial {trial.system_attrs['failed_trial']}, resumed after "
                reason += f"{trial.user_attrs.get('resumed_epochs', 0)} epoch(s))"
            bar.console.print(
                f"trial {trial.number} {trial.params.get('family')} depth {trial.params.get('depth')}: "
                f"{trial.state.name} {config.target.metric}={value} {reason}".rstrip()
            )

        def on_wait(running: int) -> None:
            bar.update(steps_task, description=f"waiting for {running} trial(s) running elsewhere", visible=True)

        objective = make_objective(ctx, on_step=on_step, on_start=on_start)
        run_worker(study, objective, poll_s=min(5.0, config.study.heartbeat_s), on_wait=on_wait, on_done=on_done)
    report = confirm_winner(study, ctx)
    render(report, console)
    return report


def confirm_winner(study: optuna.Study, ctx: StudyContext) -> StudyReport:
    """Evaluate the report's winner on the test split once, and log it on the study run."""
    report = build_report(study)
    winner = report.winner
    if winner is not None and winner.test is None and ctx.model_path(winner.trial).exists():
        winner.test = confirm_on_test(ctx, winner.trial)
        study.set_user_attr(test_attr(winner.trial), winner.test)
        ctx.tracker.log_metrics(ctx.parent_run_id, {f"test_{k}": v for k, v in winner.test.items()})
        ctx.tracker.set_tags(
            ctx.parent_run_id,
            {"winner_trial": winner.trial, "winner_family": winner.family, "winner_depth": winner.depth,
             "winner_passes": winner.passes},
        )
    ctx.tracker.log_metrics(
        ctx.parent_run_id,
        {f"best_{row.family}_depth{row.depth}": row.best for row in report.rows if row.best is not None},
    )
    # frontier plot, summary table, winner's test metrics, winner in the model registry (never raises)
    log_study(ctx.tracker, ctx.parent_run_id, report, study,
              ctx.model_path(winner.trial) if winner is not None else None, ctx.dataset.duration_ms)
    return report


def load_report(storage_url: str, study_name: str) -> StudyReport:
    from .errors import UserError

    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except KeyError:
        raise UserError(f"no study named {study_name!r} in {mask_url(storage_url)}") from None
    return build_report(study)


def list_studies(storage_url: str) -> list[optuna.study.StudySummary]:
    return optuna.get_all_study_summaries(storage=storage_url)


