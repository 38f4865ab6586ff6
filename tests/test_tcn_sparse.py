"""The TCN's opt-in sparse first layer computes the dense causal convolution's function
and weight gradients (float64, CPU: tolerance 1e-10 only absorbs summation order)."""

from __future__ import annotations

import pytest
import torch

from neurosearch.spaces import InputMeta, get_family
from neurosearch.spaces.base import CausalConv1d, SparseInputCausalConv1d


def spikes(b: int, n: int, t: int, p: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, n, t, generator=g) < p).double()
    return x * torch.randint(1, 3, x.shape, generator=g)  # some bins hold 2 spikes


@pytest.mark.parametrize("kernel,T,p,bias", [(1, 9, 0.3, True), (5, 40, 0.05, True), (12, 7, 0.2, False),
                                             (30, 300, 0.005, True), (4, 50, 0.0, True)])
def test_sparse_first_layer_equals_the_dense_convolution(kernel, T, p, bias):
    torch.manual_seed(kernel)
    dense = CausalConv1d(11, 6, kernel, bias=bias).double()
    sparse = SparseInputCausalConv1d(11, 6, kernel, bias=bias).double()
    sparse.load_state_dict(dense.state_dict())
    x = spikes(3, 11, T, p, seed=kernel)
    y_dense, y_sparse = dense(x), sparse(x)
    torch.testing.assert_close(y_sparse, y_dense, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y_dense)
    (y_dense * w).sum().backward()
    (y_sparse * w).sum().backward()
    torch.testing.assert_close(sparse.weight.grad, dense.weight.grad, rtol=1e-10, atol=1e-12)
    if bias:
        torch.testing.assert_close(sparse.bias.grad, dense.bias.grad, rtol=1e-10, atol=1e-12)


def test_sparse_first_layer_falls_back_to_dense_when_the_input_needs_a_gradient():
    layer = SparseInputCausalConv1d(4, 3, 5).double()
    x = spikes(2, 4, 20, 0.2, seed=1).requires_grad_()
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tcn_with_sparse_first_layer_equals_dense(mode):
    family = get_family("tcn")
    spec = {"family": "tcn", "depth": 3, "width": 8, "kernels": [15, 4, 4], "dilations": [1, 1, 2],
            "residual": True, "norm": "batch", "activation": "relu"}
    meta = InputMeta.ungrouped(20)
    torch.manual_seed(0)
    dense = family.build(spec, meta).double()
    sparse = family.build({**spec, "first_layer": "sparse"}, meta).double()
    sparse.load_state_dict(dense.state_dict())
    assert isinstance(sparse.blocks[0].conv, SparseInputCausalConv1d)
    assert type(dense.blocks[0].conv) is CausalConv1d
    getattr(dense, mode)(), getattr(sparse, mode)()
    x = spikes(4, 20, 120, 0.02, seed=3)
    for a, b in zip(sparse(x), dense(x)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="first_layer"):
        family.build({**spec, "first_layer": "csr"}, meta)
