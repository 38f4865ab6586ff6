"""Networks of units that are themselves small deep networks ("a mini-network per neuron")."""

from __future__ import annotations

import importlib
import random
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from .base import (
    Activation,
    Choices,
    Family,
    InputMeta,
    IntRange,
    PositiveInt,
    SpaceBase,
)

if TYPE_CHECKING:
    import optuna
    from torch import nn

Grouping = Literal["branch", "random"]


class DeepUnitSpace(SpaceBase):
    """Search space of the deep-unit family (defaults sized for a CPU).

    A depth d is realisable when d = L x I with L in ``unit_layers`` and I in
    ``inner_layers``; the defaults realise 1, 2, 3, 4, 6 and 9.
    """

    depths: list[int] = [1, 2, 3, 4]
    #: L, the number of unit layers (branch units, ..., soma units)
    unit_layers: Annotated[list[PositiveInt], Choices] = [1, 2, 3]
    #: I, the number of nonlinear layers inside every unit
    inner_layers: Annotated[list[PositiveInt], Choices] = [1, 2, 3]
    #: channels of every hidden layer inside a unit
    inner_width: Annotated[list[PositiveInt], Choices] = [4, 8, 16]
    #: how inputs are grouped into first-layer units: by dendritic branch, or at random
    grouping: Annotated[list[Grouping], Choices] = ["branch", "random"]
    #: inputs per first-layer unit when grouping is "random"
    group_size: Annotated[list[PositiveInt], Choices] = [4, 8, 16]
    #: units in each intermediate unit layer (layers 2 .. L-1)
    units: Annotated[list[PositiveInt], Choices] = [2, 4, 8]
    #: units in the last unit layer (the soma) when L >= 2
    soma_units: Annotated[list[PositiveInt], Choices] = [1, 2]
    #: outputs of every unit that feeds a further unit layer (its "axon")
    unit_outputs: Annotated[list[PositiveInt], Choices] = [1, 2]
    #: temporal filter (ms) of the first-layer units, over their own inputs
    first_kernel: IntRange = (15, 50)
    #: temporal filter of later-layer units, over the previous layer's unit outputs
    kernel: IntRange = (3, 15)
    activation: Annotated[list[Activation], Choices] = ["relu", "gelu", "elu"]
    #: seed of the random grouping (not searched: fixed for the study)
    group_seed: int = Field(default=0, ge=0)

    def factorisations(self, depth: int) -> list[tuple[int, int]]:
        """(unit_layers, inner_layers) pairs from this space whose product is ``depth``."""
        return [(L, depth // L) for L in sorted(self.unit_layers)
                if depth % L == 0 and depth // L in self.inner_layers]

    @model_validator(mode="after")
    def _depths_realisable(self) -> "DeepUnitSpace":
        bad = [d for d in self.depths if not self.factorisations(d)]
        if bad:
            raise ValueError(
                f"depths {bad} cannot be realised as unit_layers x inner_layers with unit_layers in "
                f"{self.unit_layers} and inner_layers in {self.inner_layers}"
            )
        return self


def unit_assignment(spec: dict, inputs: InputMeta) -> list[int]:
    """Per input, the index of its first-layer unit."""
    if spec["grouping"] == "branch":
        index = {g: u for u, g in enumerate(inputs.branch_ids)}
        return [index[g] for g in inputs.groups]
    if spec["grouping"] == "random":
        size = int(spec["group_size"])
        order = list(range(inputs.n_inputs))
        random.Random(int(spec.get("group_seed", 0))).shuffle(order)
        unit = [0] * inputs.n_inputs
        for position, i in enumerate(order):
            unit[i] = position // size
        return unit
    raise ValueError(f"unknown grouping {spec['grouping']!r}; known: branch, random")


class DeepUnit(Family):
    """Network of units, each unit itself a small deep network.

    Unit layer 1 (branch units): inputs are grouped, by dendritic branch
    (``InputMeta.groups``) or at random in groups of ``group_size``; each unit applies a
    causal temporal filter (length ``first_kernel``) to its own inputs only, giving
    ``inner_width`` channels, then ``inner_layers`` nonlinear layers: the filter followed
    by the activation is the first, and ``inner_layers - 1`` unit-private 1x1 layers of
    ``inner_width`` follow. A unit that feeds a further layer ends in a linear projection
    to ``unit_outputs`` channels. Unit layers 2 .. L (``units`` units each, the last one
    ``soma_units``) are built the same way except that every unit's temporal filter
    (length ``kernel``) sees the outputs of all units of the previous layer. The heads
    read the last layer's hidden channels linearly. All units of a layer run batched
    (grouped convolution / block-diagonal matmul).

    Depth rule: depth = unit_layers x inner_layers. Every input->output path crosses every
    unit layer and, inside each unit, exactly inner_layers activations; the temporal
    filters and the unit output projections are linear, the heads do not count.
    ``sample`` picks a factorisation of the requested depth allowed by the space; the
    space rejects depths with none. Receptive field = first_kernel + (L-1)(kernel-1).
    """

    name = "deep_unit"
    Space = DeepUnitSpace

    def _sample(self, trial: optuna.Trial, space: DeepUnitSpace, depth: int) -> dict:
        options = space.factorisations(depth)
        if not options:
            raise ValueError(f"deep_unit cannot realise depth {depth} with unit_layers {space.unit_layers} "
                             f"and inner_layers {space.inner_layers}")
        p = self.param
        if len(options) == 1:
            n_layers = options[0][0]
        else:  # the choices depend on the depth, so the parameter name does too
            n_layers = trial.suggest_categorical(p(f"depth{depth}.unit_layers"), [L for L, _ in options])
        grouping = trial.suggest_categorical(p("grouping"), space.grouping)
        spec = {
            "unit_layers": n_layers,
            "inner_layers": depth // n_layers,
            "inner_width": trial.suggest_categorical(p("inner_width"), space.inner_width),
            "grouping": grouping,
            "group_size": trial.suggest_categorical(p("group_size"), space.group_size) if grouping == "random" else None,
            "group_seed": space.group_seed,
            "units": [],
            "unit_outputs": 1,
            "first_kernel": trial.suggest_int(p("first_kernel"), *space.first_kernel),
            "kernel": None,
            "activation": trial.suggest_categorical(p("activation"), space.activation),
        }
        if n_layers >= 2:
            middle = trial.suggest_categorical(p("units"), space.units) if n_layers >= 3 else None
            soma = trial.suggest_categorical(p("soma_units"), space.soma_units)
            spec["units"] = [middle] * (n_layers - 2) + [soma]
            spec["unit_outputs"] = trial.suggest_categorical(p("unit_outputs"), space.unit_outputs)
            spec["kernel"] = trial.suggest_int(p("kernel"), *space.kernel)
        return spec

    def depth(self, spec: dict) -> int:
        return int(spec["unit_layers"]) * int(spec["inner_layers"])

    def receptive_field(self, spec: dict) -> int:
        later = (int(spec["unit_layers"]) - 1) * (int(spec["kernel"]) - 1) if int(spec["unit_layers"]) > 1 else 0
        return int(spec["first_kernel"]) + later

    def build(self, spec: dict, inputs: InputMeta) -> nn.Module:
        from ._deep_unit import DeepUnitNet

        self._check_spec(spec)
        return DeepUnitNet(spec, inputs)


FAMILY = DeepUnit()


def __getattr__(name: str):
    """The network code is in ``_deep_unit`` (it needs torch, which the search space does not):
    its public names stay reachable here, also for models pickled under this module."""
    if name in {"DeepUnitNet"}:
        return getattr(importlib.import_module("._deep_unit", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
