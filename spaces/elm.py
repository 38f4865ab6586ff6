"""A recurrent leaky-memory neuron model in the spirit of the Expressive Leaky Memory
(ELM) neuron (Spieler et al., ICLR 2024); an independent PyTorch implementation."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from .base import (
    Activation,
    Choices,
    Family,
    InputMeta,
    PositiveInt,
    SpaceBase,
)

if TYPE_CHECKING:
    import optuna
    from torch import nn

PositiveFloat = Annotated[float, Field(gt=0)]
#: initial synaptic time constants (ms) of the input currents, log-spaced; learned
SYNAPSE_TAU_INIT = (1.0, 10.0)


class ELMSpace(SpaceBase):
    """Search space of the ELM family (defaults sized for a CPU)."""

    depths: list[int] = [1, 2, 3, 4]
    #: number of leaky memory units
    memory_units: Annotated[list[PositiveInt], Choices] = [8, 16, 32]
    #: hidden width of the update MLP (used when depth >= 2)
    widths: Annotated[list[PositiveInt], Choices] = [16, 32, 64]
    activation: Annotated[list[Activation], Choices] = ["relu", "gelu", "elu"]
    #: memory time constants are initialised log-spaced from tau_min to tau_max (ms);
    #: each is sampled log-uniformly from its [low, high]
    tau_min: tuple[PositiveFloat, PositiveFloat] = (1.0, 10.0)
    tau_max: tuple[PositiveFloat, PositiveFloat] = (50.0, 1000.0)

    @model_validator(mode="after")
    def _tau_ranges(self) -> "ELMSpace":
        for name in ("tau_min", "tau_max"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} range [{lo}, {hi}] is empty: low must be <= high")
        if self.tau_min[1] > self.tau_max[0]:
            raise ValueError("tau_min's range must lie below tau_max's (tau_min[1] <= tau_max[0])")
        return self


class ELM(Family):
    """Leaky memory neuron (after the ELM neuron of Spieler et al. 2024): ``memory_units``
    leaky memory units with learned per-unit time constants (initialised log-spaced in
    [tau_min, tau_max]) are updated every ms by a small MLP of the current synaptic input
    (a learned linear projection of the input spikes, low-pass filtered by learned
    synaptic time constants) and the previous memory; the outputs are linear read-outs of
    the memory. See ``ELMNet`` for the equations.

    Depth rule: depth = number of nonlinear layers of the per-step update network on the
    path x_t -> m_t: ``depth - 1`` hidden layers of ``width`` units (``activation``) plus
    the tanh layer that produces the bounded memory update (it is a nonlinear layer, so it
    counts; depth 1 is a leaky tanh RNN). The synaptic filtering, the leaky memory
    integration and the read-out are linear and do not count. The recurrence makes the
    receptive field unbounded (None).
    """

    name = "elm"
    Space = ELMSpace

    def _sample(self, trial: optuna.Trial, space: ELMSpace, depth: int) -> dict:
        p = self.param
        spec = {
            "memory_units": trial.suggest_categorical(p("memory_units"), space.memory_units),
            "hidden": [],
            "activation": None,
            "tau_min": trial.suggest_float(p("tau_min"), *space.tau_min, log=True),
            "tau_max": trial.suggest_float(p("tau_max"), *space.tau_max, log=True),
        }
        if depth >= 2:
            spec["hidden"] = [trial.suggest_categorical(p("width"), space.widths)] * (depth - 1)
            spec["activation"] = trial.suggest_categorical(p("activation"), space.activation)
        return spec

    def depth(self, spec: dict) -> int:
        return len(spec["hidden"]) + 1

    def receptive_field(self, spec: dict) -> None:
        return None

    def build(self, spec: dict, inputs: InputMeta) -> nn.Module:
        from ._elm import ELMNet

        self._check_spec(spec)
        return ELMNet(spec, inputs)


FAMILY = ELM()


def __getattr__(name: str):
    """The network code is in ``_elm`` (it needs torch, which the search space does not):
    its public names stay reachable here, also for models pickled under this module."""
    if name in {"ELMNet", "SCAN_CHUNK", "synaptic_current"}:
        return getattr(importlib.import_module("._elm", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
