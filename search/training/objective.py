"""One trial: sample an architecture for its planned slot, train it, log it.

The objective never branches on family names: the family module samples, builds
and states the depth. Everything a trial leaves behind (checkpoint, final model)
lives in the study's ``Workspace``, keyed so that a retried trial finds its
predecessor's checkpoint.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from neurosearch.simulators import Dataset
from neurosearch.spaces import FAMILIES, Family, InputMeta, get_family, n_params

from ..answer.confirm import confirmed_passes
from ..answer.metrics import METRICS
from ..answer.settle import settlement, target_cleared
from ..config import Config
from ..study.attrs import (
    ATTR_BEST_EPOCH,
    ATTR_DEVICE,
    ATTR_MLFLOW_RUN_ID,
    ATTR_N_PARAMS,
    ATTR_PRUNE_REASON,
    ATTR_REPORTED_DEPTH,
    ATTR_RESUMED_EPOCHS,
    ATTR_SPEC,
    ATTR_TRAIN_SECONDS,
    ATTR_VAL_METRICS,
    ATTR_WORKER,
)
from ..study.plan import PRUNE_REASONS, TrialFailed, TrialSkipped, suggest_slot
from ..study.workspace import Workspace, save_model
from ..tracking.artifacts import log_trial_artifacts
from ..tracking.monitor import SystemMetrics
from ..tracking.tracker import Tracker
from .data import SplitTensors
from .train import EpochResult, NonFiniteLoss, Trainer, trial_seed


@dataclass
class StudyContext:
    """Everything trials share: config, data on the device, tracking."""

    config: Config
    dataset: Dataset
    device: torch.device
    tracker: Tracker
    parent_run_id: str
    study_uid: str | None = None
    _splits: dict[str, SplitTensors] = field(default_factory=dict)

    def split(self, name: str) -> SplitTensors:
        if name not in self._splits:
            self._splits[name] = SplitTensors(self.dataset, name, self.device)
        return self._splits[name]

    @property
    def inputs(self) -> InputMeta:
        return InputMeta(n_inputs=self.dataset.n_inputs, groups=tuple(int(g) for g in self.dataset.input_group))

    @property
    def workspace(self) -> Workspace:
        return Workspace.of(self.config, self.study_uid)


@dataclass
class Candidate:
    """The network one trial trains: its family, sampled spec, module and size."""

    family: Family
    depth: int
    spec: dict
    model: torch.nn.Module
    size: int
    lr: float

    @property
    def label(self) -> str:
        return f"{self.family.name} depth {self.depth}"


def make_objective(
    ctx: StudyContext, on_step: Callable[[int, int], None] | None = None, on_start: Callable[[str], None] | None = None
) -> Callable[[optuna.Trial], float]:
    """The function a worker runs per trial; returns the best validation value of the target metric."""

    def objective(trial: optuna.Trial) -> float:
        family_name, depth = suggest_slot(trial, sorted(FAMILIES))
        _skip_if_settled(trial, ctx.config, family_name, depth)  # before the sampler draws anything
        lr = trial.suggest_float("lr", *ctx.config.training.learning_rate, log=True)
        candidate = _build(trial, ctx, get_family(family_name), depth, lr)
        if on_start is not None:
            on_start(f"trial {trial.number}: {candidate.label}, {candidate.size:,} params")
        run_id = _start_tracking(trial, ctx, candidate)
        monitor = SystemMetrics(ctx.tracker.uri, run_id)  # system/* metrics (GPU where MLflow can read it)
        state: TrialState | None = TrialState.FAIL  # None: interrupted (Ctrl-C)
        trainer: Trainer | None = None
        try:
            trainer = _trainer(trial, ctx, candidate)
            _train(trial, ctx, trainer, run_id, on_step)
            value = _keep_best(trial, ctx, trainer, candidate, run_id)
            state = TrialState.COMPLETE
            return value
        except optuna.TrialPruned as exc:
            state = TrialState.PRUNED
            if str(exc):  # the pruner's reason, for the progress line and the report
                trial.set_user_attr(ATTR_PRUNE_REASON, str(exc))
            raise
        except NonFiniteLoss as exc:
            state = TrialState.PRUNED
            trial.set_user_attr(ATTR_PRUNE_REASON, str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except torch.cuda.OutOfMemoryError:
            raise TrialFailed(f"out of GPU memory for {candidate.label} ({candidate.size:,} params)") from None
        except KeyboardInterrupt:
            state = None
            raise
        finally:
            monitor.stop()
            _finish(trial, ctx, candidate, run_id, trainer, state)

    return objective


def _skip_if_settled(trial: optuna.Trial, config: Config, family: str, depth: int) -> None:
    """Skip a slot whose answer is known: its family passes at a shallower depth,
    confirmed on test (``skip_deeper_once_passing``), or its own depth is settled
    (``stop_settled_depths``, answer/settle.py)."""
    if config.study.skip_deeper_once_passing:
        shallower = [d for d in confirmed_passes(trial.study, family) if d < depth]
        if shallower:
            raise TrialSkipped(f"{family} already passes at depth {min(shallower)} (confirmed on the test split)")
    if config.study.stop_settled_depths:
        record = settlement(trial.study, family, depth)
        if record is not None and record.settled:
            raise TrialSkipped(record.reason(config.target.metric, config.target.threshold))


def _build(trial: optuna.Trial, ctx: StudyContext, family: Family, depth: int, lr: float) -> Candidate:
    """Sample the family's architecture at this depth, build it, record what was built and where."""
    spec = family.sample(trial, ctx.config.space(family.name), depth)
    field = family.receptive_field(spec)
    burn_in = ctx.config.training.burn_in_ms
    if field is not None and field > burn_in + 1:
        raise TrialFailed(
            f"{family.name} depth {depth} has a {field} ms receptive field but training.burn_in_ms is {burn_in}: "
            "its first ms would be scored without the history it needs; raise burn_in_ms or narrow the space"
        )
    torch.manual_seed(trial_seed(ctx.config.study.seed, trial.number))  # before build: the initial weights are seeded
    model = family.build(spec, ctx.inputs)
    size = n_params(model)
    trial.set_user_attr(ATTR_WORKER, f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr(ATTR_SPEC, spec)
    trial.set_user_attr(ATTR_N_PARAMS, size)
    trial.set_user_attr(ATTR_REPORTED_DEPTH, family.depth(spec))
    return Candidate(family, depth, spec, model, size, lr)


def _start_tracking(trial: optuna.Trial, ctx: StudyContext, candidate: Candidate) -> str:
    """The trial's MLflow run; a retry closes its dead attempt's run as failed and links to it."""
    run_id = ctx.tracker.start_trial(
        ctx.parent_run_id,
        ctx.config.study.name,
        trial.number,
        {"family": candidate.family.name, "depth": candidate.depth, "n_params": candidate.size,
         **_retry_tags(_stored(trial))},
    )
    previous_run = trial.user_attrs.get(ATTR_MLFLOW_RUN_ID)
    if previous_run:
        ctx.tracker.end_run(previous_run, TrialState.FAIL)
    trial.set_user_attr(ATTR_MLFLOW_RUN_ID, run_id)
    ctx.tracker.log_params(
        run_id, {"arch": candidate.spec, "lr": candidate.lr, "training": ctx.config.training.model_dump()}
    )
    return run_id


def _trainer(trial: optuna.Trial, ctx: StudyContext, candidate: Candidate) -> Trainer:
    """A trainer for the candidate, resumed from the checkpoint of a dead attempt if there is one."""
    metric = ctx.config.target.metric
    trainer = Trainer(
        candidate.model, ctx.split("train"), ctx.split("valid"), ctx.config.training, candidate.lr,
        seed=trial_seed(ctx.config.study.seed, trial.number), checkpoint=ctx.workspace.checkpoint(_stored(trial)),
        select=(metric, METRICS[metric].higher_is_better),
    )
    trial.set_user_attr(ATTR_RESUMED_EPOCHS, trainer.resumed_epochs)
    return trainer


def _train(trial: optuna.Trial, ctx: StudyContext, trainer: Trainer, run_id: str,
           on_step: Callable[[int, int], None] | None) -> None:
    """Train the remaining epochs, reporting each to Optuna (which may prune) and MLflow."""
    metric = ctx.config.target.metric
    for done in trainer.history:  # resumed epochs: report them again for the pruner
        trial.report(done.metrics[metric], done.epoch)

    def on_epoch(result: EpochResult) -> None:
        ctx.tracker.log_metrics(
            run_id, {"train_loss": result.train_loss, **{f"val_{k}": v for k, v in result.metrics.items()}},
            step=result.epoch,
        )
        trial.report(result.metrics[metric], result.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {result.epoch + 1}: {PRUNE_REASONS[ctx.config.training.pruning]}")

    trainer.fit(on_epoch=on_epoch, on_step=on_step, enough=target_cleared(ctx.config))


def _keep_best(trial: optuna.Trial, ctx: StudyContext, trainer: Trainer, candidate: Candidate, run_id: str) -> float:
    """The trial stands for its best validation epoch: save that network; return its value."""
    trainer.restore_best()
    best = trainer.best_metrics
    trial.set_user_attr(ATTR_VAL_METRICS, best)
    trial.set_user_attr(ATTR_BEST_EPOCH, trainer.best_epoch)
    save_model(ctx.workspace.model(trial.number), trainer.model, candidate.spec, ctx.inputs, trainer.v_mean,
               trainer.v_std)
    ctx.tracker.log_metrics(run_id, {"train_seconds": trainer.seconds, "n_params": candidate.size,
                                     **{f"best_val_{k}": v for k, v in best.items()}})
    return best[ctx.config.target.metric]


def _finish(trial: optuna.Trial, ctx: StudyContext, candidate: Candidate, run_id: str, trainer: Trainer | None,
            state: TrialState | None) -> None:
    """Record the training time, log plots and files of a finished or pruned trial (never
    raises), and close the run with the trial's state."""
    if trainer is not None:
        trial.set_user_attr(ATTR_TRAIN_SECONDS, trainer.seconds)
        trial.set_user_attr(ATTR_DEVICE, str(ctx.device))
        if state in (TrialState.COMPLETE, TrialState.PRUNED):
            log_trial_artifacts(
                ctx.tracker, run_id, trainer, candidate.spec, ctx.config.target.metric, ctx.config.target.threshold,
                f"trial {trial.number}: {candidate.label}",
                ctx.workspace.model(trial.number) if state == TrialState.COMPLETE else None,
            )
    ctx.tracker.end_run(run_id, state)


def _stored(trial: optuna.Trial) -> FrozenTrial:
    """The stored record of a live trial (its system attrs say whether it is a retry)."""
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def _retry_tags(record: FrozenTrial) -> dict[str, Any]:
    history = RetryHeartbeatStaleTrialCallback.retry_history(record)
    if not history:
        return {}
    return {"retry_of_trial": history[-1], "retry_of_run": record.user_attrs.get(ATTR_MLFLOW_RUN_ID, "")}


