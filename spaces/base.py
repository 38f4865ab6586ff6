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

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import optuna
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

#: the shared torch layers live in ``_layers`` (imported on first use, as
#: ``base.CausalConv1d`` still works): this module, and so every family's search space
#: and ``search.toml``'s validation, loads without torch, which takes seconds to import
_LAYERS = {"ACTIVATIONS", "ChannelLayerNorm", "CausalConv1d", "SparseInputCausalConv1d", "Heads",
           "make_activation", "make_norm", "hidden_init_"}


def __getattr__(name: str) -> Any:
    if name in _LAYERS:
        return getattr(importlib.import_module("._layers", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
