"""Training one sampled network: windows in, per-epoch validation metrics out.

The trainer knows nothing about Optuna or MLflow; the objective passes it an
``on_epoch`` callback (which may raise ``optuna.TrialPruned``) and a checkpoint
path, so a trial interrupted anywhere continues from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from neurosearch.spaces import InputMeta, get_family
from neurosearch.spaces.base import Heads

from ..answer.metrics import evaluate
from ..config import TrainingSection
from ..errors import UserError
from .data import SplitTensors
from .weights import load_weights, save_atomic

GRAD_CLIP = 1.0
"""Global gradient-norm ceiling: one bad batch must not throw a deep network off."""


def trial_seed(study_seed: int, number: int) -> int:
    """One seed per trial for the initial weights, window order and dropout: the same
    study seed and trial number give the same network."""
    return study_seed * 100_003 + number


class NonFiniteLoss(RuntimeError):
    """The loss became NaN/inf: the trial is pruned with this reason, the study goes on."""


def resolve_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; GPU math set up for speed."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"training.device is {name!r} but no CUDA GPU is visible (use 'auto' or 'cpu')")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"training.device is {name!r} but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def autocast(settings: TrainingSection, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast only when asked: for these convolutions TF32 measures faster (docs/DESIGN.md)."""
    if settings.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    metrics: dict[str, float]
    seconds: float


@dataclass
class Prediction:
    """Validation/test predictions of whole simulations, for metrics and plots."""

    spike_prob: np.ndarray
    spike_true: np.ndarray
    v_pred: np.ndarray
    v_true: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """AdamW on BCE(spike) + w·MSE(standardised clipped voltage), loss after a burn-in.

    Measured on held-out simulations of the calibrated data (bench/RESULTS.md): the
    networks overfit within a few hundred steps, so a trial keeps its best validation
    epoch and stops once validation has not improved for ``patience`` epochs; gradient
    clipping keeps deep networks from diverging at a learning rate that suits shallow
    ones. A one-cycle schedule is available (``schedule``) but annealed into more
    overfitting here than a constant rate did. An epoch is one pass over the training
    split's scored milliseconds unless ``steps_per_epoch`` says otherwise, so a larger
    dataset means more steps, not fewer passes."""

    def __init__(
        self,
        model: nn.Module,
        train: SplitTensors,
        valid: SplitTensors,
        settings: TrainingSection,
        learning_rate: float,
        seed: int,
        checkpoint: Path | None = None,
        select: tuple[str, bool] = ("spike_auc", True),
    ) -> None:
        self.device = train.device
        self.model = model.to(self.device)
        self.train_data, self.valid_data = train, valid
        self.settings = settings
        self.v_mean = float(train.voltage.mean())
        self.v_std = float(train.voltage.std()) or 1.0
        spike_rate = float(train.spikes[:, settings.burn_in_ms :].mean())
        for module in self.model.modules():
            if isinstance(module, Heads):
                module.start_at(spike_rate)
        scored_per_step = settings.batch_size * (settings.window_ms - settings.burn_in_ms)
        self.steps_per_epoch = settings.steps_per_epoch or max(
            1, math.ceil(len(train) * (train.T - settings.burn_in_ms) / scored_per_step)
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=learning_rate, weight_decay=settings.weight_decay)
        total_steps = settings.epochs * self.steps_per_epoch
        self.scheduler = (
            torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=learning_rate, total_steps=total_steps,
                                                pct_start=0.25)
            if settings.schedule == "one-cycle" and total_steps >= 8  # (too few steps for a warm-up)
            else torch.optim.lr_scheduler.ConstantLR(self.optimizer, factor=1.0, total_iters=0)
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        torch.manual_seed(seed)
        self.checkpoint = checkpoint
        self.select_metric, self.select_higher = select
        self.history: list[EpochResult] = []
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.seconds = 0.0
        self.cleared = False  # an epoch already settled the question (``fit``'s ``enough``)
        self._resume()

    def _resume(self) -> None:
        if self.checkpoint is None or not self.checkpoint.exists():
            return
        state = load_weights(self.checkpoint, self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu() if self.device.type == "cpu" else state["generator"])
        self.history = [EpochResult(**row) for row in state["history"]]
        self.seconds = state["seconds"]
        self.best_epoch, self.best_state = state["best_epoch"], state["best_state"]
        self.cleared = state.get("cleared", False)  # a worker that died after it stopped on the target

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        save_atomic(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "history": [{**vars(row), "metrics": {k: float(v) for k, v in row.metrics.items()}}
                            for row in self.history],  # plain values: loadable as weights only
                "seconds": self.seconds,
                "best_epoch": self.best_epoch,
                "best_state": self.best_state,
                "cleared": self.cleared,
            },
            self.checkpoint,
        )

    @property
    def resumed_epochs(self) -> int:
        return len(self.history)

    def _loss(self, x: torch.Tensor, spikes: torch.Tensor, volts: torch.Tensor) -> torch.Tensor:
        burn = self.settings.burn_in_ms
        with autocast(self.settings, self.device):
            logit, v = self.model(x)
        logit, v = logit[:, burn:].float(), v[:, burn:].float()
        target_v = (volts[:, burn:] - self.v_mean) / self.v_std
        bce = nn.functional.binary_cross_entropy_with_logits(logit, spikes[:, burn:])
        return bce + self.settings.voltage_weight * nn.functional.mse_loss(v, target_v)

    def fit(
        self,
        on_epoch: Callable[[EpochResult], None] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        enough: Callable[[Prediction], bool] | None = None,
    ) -> list[EpochResult]:
        """Train the remaining epochs; ``on_epoch`` sees each epoch's validation metrics.
        Stops early once the best epoch is ``patience`` epochs old, or once ``enough``
        says an epoch's validation predictions already settle the question (a network
        that clears the target with confidence need not train on)."""
        s = self.settings
        steps = self.steps_per_epoch
        for epoch in range(len(self.history), s.epochs):
            if self.stopped_early or self.cleared:
                break
            start = time.perf_counter()
            self.model.train()
            total = torch.zeros((), device=self.device)
            for step in range(steps):
                x, spikes, volts = self.train_data.sample(s.batch_size, s.window_ms, self.generator)
                loss = self._loss(x, spikes, volts)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
                self.optimizer.step()
                self.scheduler.step()
                total += loss.detach()
                if on_step is not None:
                    on_step(epoch * steps + step + 1, s.epochs * steps)
            train_loss = float(total) / steps
            if not np.isfinite(train_loss):
                raise NonFiniteLoss(f"training loss became {train_loss} in epoch {epoch + 1}")
            prediction = self.predict(self.valid_data)
            metrics = prediction.metrics
            self.cleared = enough is not None and enough(prediction)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - start
            self.seconds += seconds
            result = EpochResult(epoch=epoch, train_loss=train_loss, metrics=metrics, seconds=seconds)
            self.history.append(result)
            self._keep_if_best(result)
            self._save()
            if on_epoch is not None:
                on_epoch(result)
        return self.history

    @property
    def stopped_early(self) -> bool:
        """No better validation value for ``patience`` epochs: more epochs would overfit."""
        if not self.history:
            return False
        last = self.history[-1].epoch
        best = self.best_epoch if self.best_epoch is not None else -1
        return last - best >= self.settings.patience

    def _keep_if_best(self, result: EpochResult) -> None:
        value = result.metrics.get(self.select_metric, float("nan"))
        if value != value:
            return
        best = None if self.best_epoch is None else self.best_metrics[self.select_metric]
        if best is None or (value > best if self.select_higher else value < best):
            self.best_epoch = result.epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @property
    def best_metrics(self) -> dict[str, float]:
        """Validation metrics of the best epoch (the last epoch's if none had the selection metric)."""
        return self.history[self.best_epoch if self.best_epoch is not None else -1].metrics

    def restore_best(self) -> None:
        """Load the weights of the best validation epoch: validation AUC on a few held-out
        simulations moves from epoch to epoch, and the trial stands for its best network
        (the test split, never used for this choice, confirms the winner)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def predict(self, data: SplitTensors) -> Prediction:
        return predict(self.model, data, self.settings, self.v_mean, self.v_std)


@torch.no_grad()
def predict(
    model: nn.Module, data: SplitTensors, settings: TrainingSection, v_mean: float, v_std: float, chunk: int = 4
) -> Prediction:
    """Run whole simulations causally; metrics skip the first ``burn_in_ms`` of each."""
    model.eval()
    burn = settings.burn_in_ms
    probs, volts = [], []
    for first in range(0, len(data), chunk):
        rows = list(range(first, min(first + chunk, len(data))))
        with autocast(settings, data.device):
            logit, v = model(data.whole(rows))
        probs.append(torch.sigmoid(logit.float())[:, burn:].cpu().numpy())
        volts.append((v.float()[:, burn:] * v_std + v_mean).cpu().numpy())
    pred = Prediction(
        spike_prob=np.concatenate(probs),
        spike_true=data.spikes[:, burn:].cpu().numpy(),
        v_pred=np.concatenate(volts),
        v_true=data.voltage[:, burn:].cpu().numpy(),
    )
    pred.metrics = evaluate(pred.spike_prob, pred.spike_true, pred.v_pred, pred.v_true)
    return pred


def retrain(spec: dict, inputs: InputMeta, train: SplitTensors, valid: SplitTensors, settings: TrainingSection,
            learning_rate: float, seed: int, select: tuple[str, bool]) -> Trainer:
    """A finished trial's architecture trained again from scratch, seeded before it is
    built, its best validation epoch restored: for a learning curve's smaller training
    sets and for a passing candidate's extra seeds."""
    torch.manual_seed(seed)
    model = get_family(spec["family"]).build(spec, inputs)
    trainer = Trainer(model, train, valid, settings, learning_rate, seed=seed, select=select)
    trainer.fit()
    trainer.restore_best()
    return trainer
