"""Causal temporal convolutional network (the architecture of Beniaguev et al. 2021)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Literal

from .base import (
    Activation,
    Choices,
    Family,
    InputMeta,
    IntRange,
    Norm,
    PositiveInt,
    SpaceBase,
)

if TYPE_CHECKING:
    import optuna
    from torch import nn


class TCNSpace(SpaceBase):
    """Search space of the TCN family (defaults sized for a CPU).

    The published 7 x 128 network is the user space ``depths = [7]``, ``widths = [128]``,
    ``first_kernel = [54, 54]``, ``kernel = [24, 24]``, ``dilation_growth = [1]``,
    ``residual = [false]``, ``norm = ["batch"]``, ``activation = ["relu"]`` (with
    ``training.burn_in_ms >= 192``, its receptive field). The defaults keep every receptive
    field up to depth 4 within the default 100 ms burn-in (40 + 6 × (1 + 2 + 4) = 82 ms):
    a network must not be scored on milliseconds for which it has no history.
    """

    depths: list[int] = [1, 2, 3, 4]
    #: channels of every hidden layer
    widths: Annotated[list[PositiveInt], Choices] = [16, 32, 64]
    #: kernel (ms) of the first layer, which sees the synapses
    first_kernel: IntRange = (10, 40)
    #: kernel of every later layer
    kernel: IntRange = (3, 7)
    #: dilations of the later layers: growth**0, growth**1, ... (1 = undilated)
    dilation_growth: Annotated[list[PositiveInt], Choices] = [1, 2]
    residual: Annotated[list[bool], Choices] = [False, True]
    norm: Annotated[list[Norm], Choices] = ["none", "batch", "layer"]
    activation: Annotated[list[Activation], Choices] = ["relu", "gelu", "elu"]
    #: how the first layer is computed: "dense" (cuDNN convolution) or "sparse" (from the
    #: input spikes' events, ``base.SparseInputCausalConv1d``); the same function, so this
    #: is a speed choice, not an architecture one. Measured (bench/RESULTS.md): sparse is
    #: faster on a small CPU but 2.5x slower than TF32 cuDNN on an H200, hence "dense"
    first_layer: Annotated[list[Literal["dense", "sparse"]], Choices] = ["dense"]


class TCN(Family):
    """Causal TCN: ``depth`` causal Conv1d layers (synapses are the input channels, left
    padding only), each followed by optional normalisation and an activation, then two
    linear 1x1 heads.

    Layer 1 has kernel ``first_kernel`` and dilation 1; layer ``j+1`` (j = 1 .. depth-1)
    has kernel ``kernel`` and dilation ``dilation_growth ** (j-1)`` (1, 1, 1, ... or
    1, 2, 4, ...). With ``residual``, layers whose input and output widths agree (all but
    the first) compute ``x + act(norm(conv(x)))``.

    Depth rule: depth = number of conv layers (each conv + activation is one hidden
    nonlinear layer; a residual skip is a shorter path and does not add depth; the heads
    do not count). Receptive field = 1 + sum over layers of (kernel - 1) * dilation.
    """

    name = "tcn"
    Space = TCNSpace

    def _sample(self, trial: optuna.Trial, space: TCNSpace, depth: int) -> dict:
        p = self.param
        width = trial.suggest_categorical(p("width"), space.widths)
        first = trial.suggest_int(p("first_kernel"), *space.first_kernel)
        kernels, dilations = [first], [1]
        residual = False
        if depth > 1:
            later = trial.suggest_int(p("kernel"), *space.kernel)
            growth = trial.suggest_categorical(p("dilation_growth"), space.dilation_growth)
            residual = trial.suggest_categorical(p("residual"), space.residual)
            kernels += [later] * (depth - 1)
            dilations += [growth ** j for j in range(depth - 1)]
        return {
            "width": width,
            "kernels": kernels,
            "dilations": dilations,
            "residual": residual,
            "norm": trial.suggest_categorical(p("norm"), space.norm),
            "activation": trial.suggest_categorical(p("activation"), space.activation),
            # a speed choice: only a parameter of the search when the space offers both
            "first_layer": (trial.suggest_categorical(p("first_layer"), space.first_layer)
                            if len(space.first_layer) > 1 else space.first_layer[0]),
        }

    def depth(self, spec: dict) -> int:
        return len(spec["kernels"])

    def receptive_field(self, spec: dict) -> int:
        return 1 + sum((int(k) - 1) * int(d) for k, d in zip(spec["kernels"], spec["dilations"]))

    def build(self, spec: dict, inputs: InputMeta) -> nn.Module:
        from ._tcn import TCNNet

        self._check_spec(spec)
        if len(spec["kernels"]) != len(spec["dilations"]) or not spec["kernels"]:
            raise ValueError("tcn spec needs one dilation per kernel and at least one layer")
        if spec.get("first_layer", "dense") not in ("dense", "sparse"):
            raise ValueError(f"tcn first_layer must be 'dense' or 'sparse', got {spec['first_layer']!r}")
        return TCNNet(spec, inputs)


FAMILY = TCN()


def __getattr__(name: str):
    """The network code is in ``_tcn`` (it needs torch, which the search space does not):
    its public names stay reachable here, also for models pickled under this module."""
    if name in {"TCNNet"}:
        return getattr(importlib.import_module("._tcn", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
