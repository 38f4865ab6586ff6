"""The torch half of the deep_unit family (``deep_unit.py`` holds its search space and depth rule):
imported when a network is built, so that loading ``search.toml`` needs no torch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import CausalConv1d, Heads, hidden_init_, make_activation
from .base import InputMeta
from .deep_unit import unit_assignment


class _UnitFilter(nn.Module):
    """First unit layer's temporal filters: unit u maps *its own* inputs (not the others')
    through a causal filter of length k to ``width`` channels (linear).

    Batched as one grouped convolution: inputs are gathered into per-unit slots (padded
    with a zero channel to the largest group) and the grouped weight is assembled from
    one ``[n_inputs, width, k]`` parameter, so the parameter count is exact
    (n_inputs * width * k + units * width) however unequal the groups are."""

    def __init__(self, unit_of_input: list[int], width: int, kernel: int) -> None:
        super().__init__()
        n = len(unit_of_input)
        n_units = max(unit_of_input) + 1
        members: list[list[int]] = [[] for _ in range(n_units)]
        for i, u in enumerate(unit_of_input):
            members[u].append(i)
        if any(not m for m in members):
            raise ValueError("every unit needs at least one input")
        slots = max(len(m) for m in members)
        gather = torch.full((n_units * slots,), n, dtype=torch.long)  # index n = the zero channel
        slot_of_input = torch.empty(n, dtype=torch.long)
        fan_in = torch.empty(n)
        for u, m in enumerate(members):
            for j, i in enumerate(m):
                gather[u * slots + j] = i
                slot_of_input[i] = u * slots + j
                fan_in[i] = len(m) * kernel
        self.n_units, self.slots, self.width, self.kernel = n_units, slots, width, kernel
        self.register_buffer("gather", gather, persistent=False)
        self.register_buffer("slot_of_input", slot_of_input, persistent=False)
        bound = (6.0 / fan_in).sqrt().view(n, 1, 1)  # He-uniform over each unit's own fan-in (base.hidden_init_)
        self.weight = nn.Parameter((torch.rand(n, width, kernel) * 2 - 1) * bound)
        self.bias = nn.Parameter(torch.zeros(n_units * width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.kernel - 1, 0, 0, 1))  # causal left padding; one zero channel at the end
        x = x.index_select(1, self.gather)  # [B, units*slots, T+k-1]
        w = self.weight.new_zeros(self.n_units * self.slots, self.width, self.kernel)
        w = w.index_copy(0, self.slot_of_input, self.weight)
        w = w.view(self.n_units, self.slots, self.width, self.kernel).transpose(1, 2)
        w = w.reshape(self.n_units * self.width, self.slots, self.kernel)
        return F.conv1d(x, w, self.bias, groups=self.n_units)


class _UnitLinear(nn.Module):
    """Block-diagonal 1x1 layer: each of ``units`` units maps its own ``d_in`` channels to
    ``d_out`` channels, ``[B, units*d_in, T] -> [B, units*d_out, T]`` (one batched matmul)."""

    def __init__(self, units: int, d_in: int, d_out: int, gain: float = math.sqrt(2.0)) -> None:
        super().__init__()
        self.units, self.d_in, self.d_out = units, d_in, d_out
        bound = gain * math.sqrt(3.0 / d_in)  # as base.hidden_init_ (gain 1 for a linear output)
        self.weight = nn.Parameter((torch.rand(units, d_out, d_in) * 2 - 1) * bound)
        self.bias = nn.Parameter(torch.zeros(units, d_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        h = x.reshape(b, self.units, self.d_in, t)
        y = torch.einsum("uoi,buit->buot", self.weight, h) + self.bias
        return y.reshape(b, self.units * self.d_out, t)


class DeepUnitNet(nn.Module):
    def __init__(self, spec: dict, inputs: InputMeta) -> None:
        super().__init__()
        self.spec = dict(spec)
        width = int(spec["inner_width"])
        inner = int(spec["inner_layers"])
        n_layers = int(spec["unit_layers"])
        outputs = int(spec["unit_outputs"])
        unit_of_input = unit_assignment(spec, inputs)
        sizes = [max(unit_of_input) + 1] + [int(u) for u in spec["units"]]
        if len(sizes) != n_layers:
            raise ValueError(f"deep_unit spec lists {len(spec['units'])} unit counts for {n_layers - 1} later layers")
        layers = []
        for layer, units in enumerate(sizes):
            if layer == 0:
                mods: list[nn.Module] = [_UnitFilter(unit_of_input, width, int(spec["first_kernel"]))]
            else:
                mods = [hidden_init_(CausalConv1d(sizes[layer - 1] * outputs, units * width, int(spec["kernel"])))]
            mods.append(make_activation(spec["activation"]))
            for _ in range(inner - 1):
                mods += [_UnitLinear(units, width, width), make_activation(spec["activation"])]
            if layer < n_layers - 1:
                mods.append(_UnitLinear(units, width, outputs, gain=1.0))  # linear "axon" to the next unit layer
            layers.append(nn.Sequential(*mods))
        self.layers = nn.Sequential(*layers)
        self.heads = Heads(sizes[-1] * width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.layers(x))
