"""The torch layers and initialisation the families share (see ``base``'s docstring).

Kept apart from ``base`` so that the search spaces load without torch; the families
import this module only when they build a network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import NORMS

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


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
