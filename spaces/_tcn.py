"""The torch half of the tcn family (``tcn.py`` holds its search space and depth rule):
imported when a network is built, so that loading ``search.toml`` needs no torch."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import CausalConv1d, Heads, SparseInputCausalConv1d, hidden_init_, make_activation, make_norm
from .base import InputMeta


class _Block(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int, norm: str, activation: str,
                 residual: bool, sparse_input: bool = False) -> None:
        super().__init__()
        conv = SparseInputCausalConv1d if sparse_input else CausalConv1d
        self.conv = hidden_init_(conv(in_ch, out_ch, kernel, dilation=dilation, bias=norm != "batch"))
        self.norm = make_norm(norm, out_ch)
        self.act = make_activation(activation)
        self.residual = bool(residual and in_ch == out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm(self.conv(x)))
        return x + y if self.residual else y


class TCNNet(nn.Module):
    def __init__(self, spec: dict, inputs: InputMeta) -> None:
        super().__init__()
        self.spec = dict(spec)
        width = int(spec["width"])
        blocks = []
        in_ch = inputs.n_inputs
        sparse = spec.get("first_layer", "dense") == "sparse"
        for j, (kernel, dilation) in enumerate(zip(spec["kernels"], spec["dilations"])):
            blocks.append(_Block(in_ch, width, int(kernel), int(dilation), spec["norm"], spec["activation"],
                                 bool(spec["residual"]), sparse_input=sparse and j == 0))
            in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.heads = Heads(width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.blocks(x))
