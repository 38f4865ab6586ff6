"""One trial: sample an architecture for its planned slot, train it, log it.

The objective never branches on family names: the family module samples, builds
and states the depth. Everything a trial leaves behind (checkpoint, final model)
lives under the study's work folder, keyed so that a retried trial finds its
predecessor's checkpoint.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from neurosearch.simulators import Dataset
from neurosearch.spaces import FAMILIES, InputMeta, get_family, n_params

from .artifacts import log_trial_artifacts
from .config import Config
from .data import SplitTensors
from .metrics import METRICS
from .monitor import SystemMetrics
from .study import TrialFailed, suggest_slot
from .tracking import Tracker
from .train import EpochResult, NonFiniteLoss, Trainer, predict


@dataclass
class StudyContext:
    """Everything trials share: config, data on the device, tracking."""

    config: Config
    dataset: Dataset
    device: torch.device
    tracker: Tracker
    parent_run_id: str
    _splits: dict[str, SplitTensors] = field(default_factory=dict)

    def split(self, name: str) -> SplitTensors:
        if name not in self._splits:
            self._splits[name] = SplitTensors(self.dataset, name, self.device)
        return self._splits[name]

    @property
    def inputs(self) -> InputMeta:
        return InputMeta(n_inputs=self.dataset.n_inputs, groups=tuple(int(g) for g in self.dataset.input_group))

    @property
    def folder(self) -> Path:
        return self.config.study.work_dir / "studies" / self.config.study.name

    def checkpoint(self, trial: optuna.trial.FrozenTrial) -> Path:
        """Keyed by the first attempt's number, so every retry finds the same file."""
        root = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
        root = trial.number if root is None else root
        return self.folder / "checkpoints" / f"trial-{root}.pt"

    def model_path(self, number: int) -> Path:
        return self.folder / "models" / f"trial-{number}.pt"


def passing_depths(study: optuna.Study, family: str, threshold: float, metric: str) -> list[int]:
    rule = METRICS[metric]
    return [
        t.params["depth"]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.params.get("family") == family and t.value is not None and rule.passes(t.value, threshold)
    ]


def save_model(path: Path, model: torch.nn.Module, spec: dict, inputs: InputMeta, trainer: Trainer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "spec": spec,
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            "n_inputs": inputs.n_inputs,
            "groups": list(inputs.groups),
            "v_mean": trainer.v_mean,
            "v_std": trainer.v_std,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The trained network and its saved record (spec, voltage scale)."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    inputs = InputMeta(n_inputs=saved["n_inputs"], groups=tuple(saved["groups"]))
    model = get_family(saved["spec"]["family"]).build(saved["spec"], inputs)
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), saved


def make_objective(
    ctx: StudyContext, on_step: Callable[[int, int], None] | None = None, on_start: Callable[[str], None] | None = None
) -> Callable[[optuna.Trial], float]:
    config = ctx.config
    metric = config.target.metric

    def objective(trial: optuna.Trial) -> float:
        family_name, depth = suggest_slot(trial, sorted(FAMILIES))
        family = get_family(family_name)
        lr = trial.suggest_float("lr", *config.training.learning_rate, log=True)
        if config.study.skip_deeper_once_passing:
            shallower = [d for d in passing_depths(trial.study, family_name, config.target.threshold, metric) if d < depth]
            if shallower:
                trial.set_user_attr("skip_reason", f"{family_name} already passes at depth {min(shallower)}")
                raise optuna.TrialPruned(trial.user_attrs["skip_reason"])
        spec = family.sample(trial, config.space(family_name), depth)
        model = family.build(spec, ctx.inputs)
        size = n_params(model)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("spec", spec)
        trial.set_user_attr("n_params", size)
        trial.set_user_attr("reported_depth", family.depth(spec))
        if on_start is not None:
            on_start(f"trial {trial.number}: {family_name} depth {depth}, {size:,} params")

        record = frozen(trial)
        run_id = ctx.tracker.start_trial(
            ctx.parent_run_id,
            config.study.name,
            trial.number,
            {"family": family_name, "depth": depth, "n_params": size, **_retry_tags(record)},
        )
        previous_run = trial.user_attrs.get("mlflow_run_id")
        if previous_run:  # a retry: close the dead attempt's run as failed and link to it
            ctx.tracker.end_run(previous_run, "FAIL")
        trial.set_user_attr("mlflow_run_id", run_id)
        ctx.tracker.log_params(run_id, {"arch": spec, "lr": lr, "training": config.training.model_dump()})
        monitor = SystemMetrics(ctx.tracker.uri, run_id)  # system/* metrics (GPU where MLflow can read it)
        state = "FAIL"
        trainer: Trainer | None = None
        try:
            trainer = Trainer(
                model, ctx.split("train"), ctx.split("valid"), config.training, lr,
                seed=config.study.seed * 100_003 + trial.number, checkpoint=ctx.checkpoint(record),
                select=(metric, METRICS[metric].higher_is_better),
            )
            trial.set_user_attr("resumed_epochs", trainer.resumed_epochs)
            for done in trainer.history:  # resumed epochs: report them again for the pruner
                trial.report(done.metrics[metric], done.epoch)

            def on_epoch(result: EpochResult) -> None:
                ctx.tracker.log_metrics(
                    run_id, {"train_loss": result.train_loss, **{f"val_{k}": v for k, v in result.metrics.items()}},
                    step=result.epoch,
                )
                trial.report(result.metrics[metric], result.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {result.epoch + 1}: below the median of its depth")

            trainer.fit(on_epoch=on_epoch, on_step=on_step)
            trainer.restore_best()
            best = trainer.best_metrics
            trial.set_user_attr("val_metrics", best)
            trial.set_user_attr("best_epoch", trainer.best_epoch)
            save_model(ctx.model_path(trial.number), trainer.model, spec, ctx.inputs, trainer)
            ctx.tracker.log_metrics(run_id, {"train_seconds": trainer.seconds, "n_params": size,
                                             **{f"best_val_{k}": v for k, v in best.items()}})
            state = "COMPLETE"
            return best[metric]
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except NonFiniteLoss as exc:
            state = "PRUNED"
            trial.set_user_attr("prune_reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except torch.cuda.OutOfMemoryError:
            raise TrialFailed(f"out of GPU memory for {family_name} depth {depth} ({size:,} params)") from None
        except KeyboardInterrupt:
            state = "INTERRUPTED"
            raise
        finally:
            if trainer is not None:
                trial.set_user_attr("train_seconds", trainer.seconds)
                trial.set_user_attr("device", str(ctx.device))
            monitor.stop()
            if trainer is not None and state in ("COMPLETE", "PRUNED"):  # plots, spec, weights; never raises
                log_trial_artifacts(
                    ctx.tracker, run_id, trainer, spec, metric, config.target.threshold,
                    f"trial {trial.number}: {family_name} depth {depth}",
                    ctx.model_path(trial.number) if state == "COMPLETE" else None,
                )
            ctx.tracker.end_run(run_id, state)

    return objective


def frozen(trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """The stored record of a live trial (its system attrs say whether it is a retry)."""
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def _retry_tags(record: optuna.trial.FrozenTrial) -> dict[str, Any]:
    history = RetryHeartbeatStaleTrialCallback.retry_history(record)
    if not history:
        return {}
    return {"retry_of_trial": history[-1], "retry_of_run": record.user_attrs.get("mlflow_run_id", "")}


def confirm_on_test(ctx: StudyContext, number: int) -> dict[str, float]:
    """Re-evaluate a finished trial's network on the test split, which no trial saw."""
    model, saved = load_model(ctx.model_path(number), ctx.device)
    return predict(model, ctx.split("test"), ctx.config.training, saved["v_mean"], saved["v_std"]).metrics
