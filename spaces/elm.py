"""A recurrent leaky-memory neuron model in the spirit of the Expressive Leaky Memory
(ELM) neuron (Spieler et al., ICLR 2024); an independent PyTorch implementation."""

from __future__ import annotations

import math
from typing import Annotated

import optuna
import torch
from pydantic import Field, model_validator
from torch import nn

from .base import (
    Activation,
    Choices,
    Family,
    Heads,
    InputMeta,
    PositiveInt,
    SpaceBase,
    hidden_init_,
    make_activation,
)

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


class ELMNet(nn.Module):
    """State: memory m (M units, time constants tau_m) and a synaptic current z (F channels,
    time constants tau_s). Each ms::

        z_t  = l_s * z_{t-1} + (1 - l_s) * (W_x x_t + b)        l = exp(-1 ms / tau)
        h_1  = act(z_t + W_m m_{t-1})                            (depth >= 2)
        h_j  = act(W_j h_{j-1} + b_j)                            j = 2 .. depth-1
        dm_t = tanh(W_o h_{depth-1} + b_o)   (depth 1: dm_t = tanh(z_t + W_m m_{t-1}))
        m_t  = l_m * m_{t-1} + (1 - l_m) * dm_t
        (spike_logit_t, voltage_t) = linear(m_t)

    W_x x_t is computed for all t at once; only the recurrence is a Python loop.
    """

    def __init__(self, spec: dict, inputs: InputMeta) -> None:
        super().__init__()
        self.spec = dict(spec)
        memory = int(spec["memory_units"])
        hidden = [int(h) for h in spec["hidden"]]
        first = hidden[0] if hidden else memory
        # hidden layers: He init, zero bias (base.hidden_init_); into the tanh update: gain 1
        self.inp = hidden_init_(nn.Conv1d(inputs.n_inputs, first, 1), gain=math.sqrt(2.0) if hidden else 1.0)
        self.mem_in = nn.Linear(memory, first, bias=False)
        self.log_tau_s = nn.Parameter(torch.linspace(math.log(SYNAPSE_TAU_INIT[0]), math.log(SYNAPSE_TAU_INIT[1]), first))
        self.log_tau_m = nn.Parameter(torch.linspace(math.log(float(spec["tau_min"])), math.log(float(spec["tau_max"])), memory))
        layers: list[nn.Module] = []
        if hidden:
            layers.append(make_activation(spec["activation"]))
            for a, b in zip(hidden[:-1], hidden[1:]):
                layers += [hidden_init_(nn.Linear(a, b)), make_activation(spec["activation"])]
            layers.append(hidden_init_(nn.Linear(hidden[-1], memory), gain=1.0))
        layers.append(nn.Tanh())
        self.update = nn.Sequential(*layers)
        self.heads = Heads(memory)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep_s = torch.exp(-torch.exp(-self.log_tau_s))
        keep_m = torch.exp(-torch.exp(-self.log_tau_m))
        gain_m = 1 - keep_m
        # everything that does not depend on the state, for all time steps at once: [T, B, F]
        drive = ((1 - keep_s)[:, None] * self.inp(x)).permute(2, 0, 1)
        w_m = self.mem_in.weight.t()
        z = torch.zeros_like(drive[0], dtype=torch.float32)
        m = z.new_zeros(z.shape[0], keep_m.shape[0])
        states = []
        for d_t in drive.unbind(0):
            z = torch.addcmul(d_t, keep_s, z)  # synaptic current
            dm = self.update(torch.addmm(z, m, w_m))  # memory update from input and memory
            m = torch.addcmul(m, gain_m, dm - m)  # leaky integration: keep_m * m + gain_m * dm
            states.append(m)
        return self.heads(torch.stack(states, 2))  # memory [B, units, T] -> two [B, T]


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
        self._check_spec(spec)
        return ELMNet(spec, inputs)


FAMILY = ELM()
