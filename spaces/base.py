"""The interface every architecture family implements, and the pieces they share.

A *family* (one module in ``spaces/`` defining ``FAMILY = SomeFamily()``) knows how to

* declare its search space (``Family.Space``, a pydantic model, one ``[spaces.<name>]``
  section of ``search.toml``),
* sample one architecture from an Optuna trial at a given depth (``Family.sample``,
  returning a JSON-able *spec* dict),
* build that spec as a ``torch.nn.Module`` for a given input layout (``Family.build``),
* state the spec's depth and receptive field.

Built modules take ``x`` float32 ``[B, n_inputs, T]`` (0/1 spikes, 1 ms bins) and return
``(spike_logit, voltage)``, each ``[B, T]``, causally: outputs at ``t`` depend only on
``x[..., :t+1]``. Heads are linear (no sigmoid; the trainer applies BCE-with-logits and
standardises the voltage itself).

**Depth** has one meaning across families: the number of hidden nonlinear layers on the
longest path from input to output. A linear map (a convolution, a temporal filter bank,
a projection) adds no depth unless a nonlinearity follows it; the output heads are
linear read-outs and never count. Each family's class docstring states its rule.

Initialisation: layers that feed an activation get He-uniform weights and zero biases
(``hidden_init_``), so deep narrow stacks fed by sparse spikes are not dead at the start;
heads keep PyTorch's default.

Causality and normalisation: ``"batch"`` normalisation normalises with statistics over
the batch *and the whole window* while training (as in the reference TCN), so only in
``eval()`` mode is a batch-normalised model strictly causal; ``"layer"`` normalisation
normalises over channels at each time step and is causal in both modes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import optuna
import torch
import torch.nn.functional as F
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ChannelLayerNorm",
    "CausalConv1d",
    "SparseInputCausalConv1d",
    "Choices",
    "Family",
    "FloatRange",
    "Heads",
    "InputMeta",
    "IntRange",
    "NORMS",
    "Norm",
    "SpaceBase",
    "make_activation",
    "make_norm",
    "hidden_init_",
    "n_params",
    "PositiveInt",
]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputMeta:
    """What a network needs to know about its inputs.

    n_inputs: number of input spike trains (synapse inputs), the channel dimension.
    groups:   per input, the id of its dendritic branch (used to group inputs into units
              "by branch"); ``len(groups) == n_inputs``. Ids are arbitrary integers.
    """

    n_inputs: int
    groups: tuple[int, ...]

    def __post_init__(self) -> None:
        if int(self.n_inputs) < 1:
            raise ValueError(f"InputMeta.n_inputs must be >= 1, got {self.n_inputs}")
        groups = tuple(int(g) for g in self.groups)
        if len(groups) != self.n_inputs:
            raise ValueError(f"InputMeta.groups has {len(groups)} entries for {self.n_inputs} inputs")
        object.__setattr__(self, "n_inputs", int(self.n_inputs))
        object.__setattr__(self, "groups", groups)

    @classmethod
    def ungrouped(cls, n_inputs: int) -> "InputMeta":
        """All inputs on one branch (when nothing is known about the morphology)."""
        return cls(n_inputs, (0,) * n_inputs)

    @property
    def branch_ids(self) -> tuple[int, ...]:
        """The distinct branch ids, sorted."""
        return tuple(sorted(set(self.groups)))

    @property
    def n_groups(self) -> int:
        return len(set(self.groups))


def n_params(module: nn.Module) -> int:
    """Number of trainable parameters (shared parameters counted once; buffers not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- spaces

Activation = Literal["relu", "gelu", "elu", "tanh", "silu"]
Norm = Literal["none", "batch", "layer"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
NORMS = ("none", "batch", "layer")


def _ordered_range(value: tuple[Any, Any]) -> tuple[Any, Any]:
    lo, hi = value
    if lo > hi:
        raise ValueError(f"range [{lo}, {hi}] is empty: low must be <= high")
    return value


def _unique(values: list[Any]) -> list[Any]:
    if not values:
        raise ValueError("must list at least one choice")
    return list(dict.fromkeys(values))


PositiveInt = Annotated[int, Field(ge=1)]
#: ``[low, high]`` inclusive, integers >= 1 (TOML: ``kernel = [3, 15]``).
IntRange = Annotated[tuple[PositiveInt, PositiveInt], AfterValidator(_ordered_range)]
#: ``[low, high]`` inclusive, floats >= 0.
FloatRange = Annotated[tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]], AfterValidator(_ordered_range)]
#: A non-empty list of choices, duplicates dropped (order kept).
Choices = AfterValidator(_unique)


#: the deepest depth any study can plan: the range of the ``depth`` param every trial
#: suggests (outside it Optuna would only warn and clamp), so configs are checked against it
MAX_DEPTH = 64


class SpaceBase(BaseModel):
    """Base of every family's ``Space``: unknown keys are errors; ``depths`` is required
    to be a non-empty list of integers in 1..``max_depth`` (sorted, duplicates dropped).
    A family lowers ``max_depth`` or adds a model validator for depths it cannot realise."""

    model_config = ConfigDict(extra="forbid")
    max_depth: ClassVar[int] = MAX_DEPTH

    depths: list[int] = [1, 2, 3, 4]

    @field_validator("depths")
    @classmethod
    def _depths_positive(cls, depths: list[int]) -> list[int]:
        if not depths:
            raise ValueError("depths must list at least one depth")
        bad = [d for d in depths if d < 1]
        if bad:
            raise ValueError(f"depths must be >= 1, got {bad}")
        deep = [d for d in depths if d > cls.max_depth]
        if deep:
            raise ValueError(f"depths above the supported maximum of {cls.max_depth}: {deep}")
        return sorted(set(depths))


# --------------------------------------------------------------------------- family


class Family(ABC):
    """One architecture family. Subclasses set ``name`` and ``Space`` and implement
    ``_sample``, ``build`` and ``depth`` (and ``receptive_field`` when it is finite)."""

    name: ClassVar[str]
    Space: ClassVar[type[BaseModel]]

    def sample(self, trial: optuna.Trial, space: BaseModel | dict | None, depth: int) -> dict:
        """Sample every architecture choice except depth (given) with ``trial.suggest_*``
        and return a JSON-able spec dict: ``{"family", "depth", **the family's choices}``.
        The space is validated and the depth checked here, once for every family."""
        space = self.space(space)
        depth = int(depth)
        if depth < 1:
            raise ValueError(f"{self.name} depth must be >= 1, got {depth}")
        return {"family": self.name, "depth": depth, **self._sample(trial, space, depth)}

    @abstractmethod
    def _sample(self, trial: optuna.Trial, space: Any, depth: int) -> dict:
        """The family's own choices at ``depth`` (a validated ``Space``, depth >= 1).
        Parameter names are prefixed with the family name (``self.param("width")``:
        "tcn.width")."""

    @abstractmethod
    def build(self, spec: dict, inputs: InputMeta) -> nn.Module:
        """The module for ``spec`` and this input layout (freshly initialised from torch's RNG)."""

    @abstractmethod
    def depth(self, spec: dict) -> int:
        """Depth by docs/DESIGN.md's rule, computed from the spec."""

    def receptive_field(self, spec: dict) -> int | None:
        """ms of input history (current bin included) the output at t depends on;
        None if unbounded (recurrent)."""
        return None

    # helpers -----------------------------------------------------------------------

    def space(self, config: dict | BaseModel | None = None) -> BaseModel:
        """The validated space from a config mapping (defaults when None)."""
        if isinstance(config, self.Space):
            return config
        if isinstance(config, BaseModel):
            config = config.model_dump()
        return self.Space.model_validate(config or {})

    def param(self, key: str) -> str:
        """The Optuna parameter name for ``key`` ("tcn.width")."""
        return f"{self.name}.{key}"

    def _check_spec(self, spec: dict) -> None:
        family = spec.get("family")
        if family != self.name:
            raise ValueError(f"spec is for family {family!r}, not {self.name!r}")
        if "depth" in spec and int(spec["depth"]) != self.depth(spec):
            raise ValueError(
                f"{self.name} spec states depth {spec['depth']} but its layers give depth {self.depth(spec)}"
            )

    def __repr__(self) -> str:
        return f"<family {self.name}>"


# --------------------------------------------------------------------------- layers


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


def hidden_init_(layer: nn.Module, gain: float = math.sqrt(2.0)) -> nn.Module:
    """Initialise a Conv1d/Linear that feeds an activation: He-uniform weights (variance
    gain**2 / fan_in, fan_in = inputs per output incl. kernel taps) and zero biases.

    PyTorch's default (variance 1/(3 fan_in), random biases) shrinks the signal at each
    ReLU layer until the biases dominate, which leaves deep narrow stacks fed by sparse
    spikes with a constant output (and no gradient) at initialisation; with zero biases a
    ReLU stack is positively homogeneous, so small inputs stay visible at any depth."""
    fan_in = layer.weight[0].numel()  # [out, in/groups, k...] -> in/groups * k
    bound = gain * math.sqrt(3.0 / fan_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dimension of ``[B, C, T]``, separately at each time
    step (hence causal; ``nn.GroupNorm(1, C)`` would also average over time)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "layer":
        return ChannelLayerNorm(channels)
    raise ValueError(f"unknown normalisation {kind!r}; known: {', '.join(NORMS)}")


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` padded on the left only, so output t sees inputs t-(k-1)*d .. t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups,
                         bias=bias, padding=0)
        self.left = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class SparseInputCausalConv1d(CausalConv1d):
    """``CausalConv1d`` for mostly-zero inputs (spike trains: ~0.5% of bins), computed from
    the nonzero entries only; same parameters and same function as the dense layer.

    The input spikes become the list of their (batch, time, channel) events; output bin
    (b, t) is the sum over the events of b in its receptive field (t-k+1 .. t) of the
    weight column ``weight[:, c, lag]`` times the event's value: one ``embedding_bag``
    gathers and sums those columns for every output bin, and its backward scatters the
    output gradient back into the weight table. Work grows with the number of events x
    kernel x out_channels instead of in_channels x time x kernel x out_channels.

    The input gets no gradient (it is data); a dense path is kept for inputs that
    require one, for tracing, export and compilation (shapes there must not depend on
    the data), and for dilated kernels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.requires_grad or self.dilation[0] != 1 or self.groups != 1 or torch.jit.is_tracing()
                or torch.compiler.is_compiling()):
            return super().forward(x)
        B, C, T = x.shape
        O, _, K = self.weight.shape
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else self.weight.dtype
        # events sorted by (b, t): their global bin key b*T + t is nondecreasing
        b, t, c = x.transpose(1, 2).nonzero(as_tuple=True)
        value = x[b, c, t].to(dtype)
        key = b * T + t
        # output bin (b, t') sums the events with key in [b*T + max(0, t'-K+1), b*T + t']
        bins = torch.arange(B * T, device=x.device)
        first = bins - torch.remainder(bins, T).clamp(max=K - 1)
        lo = torch.searchsorted(key, first)
        counts = torch.searchsorted(key, bins, right=True) - lo
        offsets = torch.cumsum(counts, 0) - counts
        n = int(offsets[-1] + counts[-1]) if B * T else 0
        owner = torch.repeat_interleave(bins, counts, output_size=n)
        event = lo[owner] + (torch.arange(n, device=x.device) - offsets[owner])
        lag = owner - key[event]  # 0 .. K-1 (same simulation, so the difference of keys)
        # table row c*K + lag holds weight[:, c, K-1-lag]: the tap that lag ms back sees
        table = self.weight.flip(2).permute(1, 2, 0).reshape(C * K, O).to(dtype)
        out = F.embedding_bag(c[event] * K + lag, table, offsets, mode="sum",
                              per_sample_weights=value[event], include_last_offset=False)
        out = out.view(B, T, O).transpose(1, 2)
        if self.bias is not None:
            out = out + self.bias.to(dtype)[:, None]
        return out.contiguous()


class Heads(nn.Module):
    """The two linear read-outs (spike logit, voltage) of ``[B, C, T]`` features, as one
    1x1 convolution with two output channels (same parameters as two separate heads)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(channels, 2, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.proj(h)
        return out[:, 0], out[:, 1]

    def start_at(self, spike_probability: float) -> None:
        """Start the spike read-out at the data's base rate (bias = its logit, weights 0).

        Output spikes fill <1% of bins, so a logit starting near 0 spends the first
        steps pushing every output down; with sparse non-negative inputs the quickest
        way is negative weights on *all* synapses, which ranks bins by how few inputs
        they saw and leaves the spike AUC below 0.5. Starting at the base rate sends
        the gradient into telling spike bins apart instead."""
        p = min(max(float(spike_probability), 1e-6), 1 - 1e-6)
        with torch.no_grad():
            self.proj.weight[0].zero_()
            self.proj.bias[0] = math.log(p / (1 - p))
            self.proj.bias[1] = 0.0  # the trainer standardises the voltage target
