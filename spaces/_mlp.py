"""The torch half of the mlp family (``mlp.py`` holds its search space and depth rule):
imported when a network is built, so that loading ``search.toml`` needs no torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import Heads, hidden_init_, make_activation, make_norm
from .base import InputMeta


class _FilterBank(nn.Module):
    """K causal temporal filters of length W per input (linear, no bias):
    ``[B, N, T] -> [B, N*K, T]``, channel n*K + k = input n through filter k."""

    def __init__(self, n_inputs: int, filters: int, window: int, shared: bool) -> None:
        super().__init__()
        self.window = window
        self.shared = shared
        if shared:
            self.conv = nn.Conv1d(1, filters, window, bias=False)
        else:
            self.conv = nn.Conv1d(n_inputs, n_inputs * filters, window, groups=n_inputs, bias=False)
        hidden_init_(self.conv, gain=1.0)  # linear: variance-preserving

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.window - 1, 0))
        if not self.shared:
            return self.conv(x)
        b, n = x.shape[0], x.shape[1]
        y = self.conv(x.reshape(b * n, 1, x.shape[2]))  # [B*N, K, T]
        return y.reshape(b, -1, y.shape[2])


class MLPNet(nn.Module):
    def __init__(self, spec: dict, inputs: InputMeta) -> None:
        super().__init__()
        self.spec = dict(spec)
        k = int(spec["filters"])
        self.bank = _FilterBank(inputs.n_inputs, k, int(spec["window"]), spec["filter_bank"] == "shared")
        layers: list[nn.Module] = []
        in_ch = inputs.n_inputs * k
        for width in spec["hidden"]:
            width = int(width)
            layers += [
                hidden_init_(nn.Conv1d(in_ch, width, 1, bias=spec["norm"] != "batch")),
                make_norm(spec["norm"], width),
                make_activation(spec["activation"]),
            ]
            if float(spec["dropout"]) > 0:
                layers.append(nn.Dropout(float(spec["dropout"])))
            in_ch = width
        self.hidden = nn.Sequential(*layers)
        self.heads = Heads(in_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.hidden(self.bank(x)))
