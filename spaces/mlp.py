"""Fully connected network on the causal input window, applied at every time step."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import field_validator

from .base import (
    Activation,
    Choices,
    Family,
    FloatRange,
    InputMeta,
    IntRange,
    Norm,
    PositiveInt,
    SpaceBase,
)

if TYPE_CHECKING:
    import optuna
    from torch import nn

FilterBank = Literal["per_input", "shared"]


class MLPSpace(SpaceBase):
    """Search space of the MLP family (defaults sized for a CPU)."""

    depths: list[int] = [1, 2, 3, 4]
    #: length W (ms) of the causal input window, current bin included
    window: IntRange = (20, 100)
    #: K temporal filters of length W per input
    filters: Annotated[list[PositiveInt], Choices] = [2, 4, 8]
    #: "per_input": each input has its own K filters; "shared": one bank of K filters for all inputs
    filter_bank: Annotated[list[FilterBank], Choices] = ["per_input", "shared"]
    widths: Annotated[list[PositiveInt], Choices] = [32, 64, 128]
    activation: Annotated[list[Activation], Choices] = ["relu", "gelu", "elu"]
    norm: Annotated[list[Norm], Choices] = ["none", "batch", "layer"]
    #: dropout after every hidden layer, sampled uniformly in [low, high]
    dropout: FloatRange = (0.0, 0.3)

    @field_validator("dropout")
    @classmethod
    def _dropout_below_one(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[1] >= 1:
            raise ValueError("dropout must be < 1")
        return value


class MLP(Family):
    """Fully connected network on the last W ms of all inputs, at every time step.

    The dense first layer on the flattened window (n_inputs x W -> width) is factorised:
    a linear temporal filter bank (K causal filters of length W per input, or one bank
    shared by all inputs; no bias, no nonlinearity) feeds a per-time-step MLP of 1x1
    convolutions (linear -> norm -> activation -> dropout) of ``depth`` hidden layers of
    ``width`` units, then two linear heads. Filter bank + first hidden layer together are
    a low-rank version of the flattened-window dense layer.

    Depth rule: depth = number of hidden fully connected layers. The filter bank is
    linear and directly feeds the first hidden layer's linear map, so it does not count;
    the heads do not count. Receptive field = W.
    """

    name = "mlp"
    Space = MLPSpace

    def _sample(self, trial: optuna.Trial, space: MLPSpace, depth: int) -> dict:
        p = self.param
        width = trial.suggest_categorical(p("width"), space.widths)
        return {
            "window": trial.suggest_int(p("window"), *space.window),
            "filters": trial.suggest_categorical(p("filters"), space.filters),
            "filter_bank": trial.suggest_categorical(p("filter_bank"), space.filter_bank),
            "hidden": [width] * depth,
            "activation": trial.suggest_categorical(p("activation"), space.activation),
            "norm": trial.suggest_categorical(p("norm"), space.norm),
            "dropout": trial.suggest_float(p("dropout"), *space.dropout),
        }

    def depth(self, spec: dict) -> int:
        return len(spec["hidden"])

    def receptive_field(self, spec: dict) -> int:
        return int(spec["window"])

    def build(self, spec: dict, inputs: InputMeta) -> nn.Module:
        from ._mlp import MLPNet

        self._check_spec(spec)
        if not spec["hidden"]:
            raise ValueError("mlp spec needs at least one hidden layer")
        return MLPNet(spec, inputs)


FAMILY = MLP()


def __getattr__(name: str):
    """The network code is in ``_mlp`` (it needs torch, which the search space does not):
    its public names stay reachable here, also for models pickled under this module."""
    if name in {"MLPNet"}:
        return getattr(importlib.import_module("._mlp", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
