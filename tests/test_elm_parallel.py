"""The ELM family's parallel forms against the plain per-millisecond loop.

``spaces/elm.py`` computes the linear synaptic filter for all time steps at once (a
chunked scan) and trains the nonlinear memory recurrence through a hand-written
backward. Both must compute the same function, and the same gradients, as the
straightforward loop kept here as the reference. float64 on the CPU, so the tolerance
(1e-9 relative) only absorbs summation order."""

from __future__ import annotations

import math

import pytest
import torch

from neurosearch.spaces import InputMeta, get_family
from neurosearch.spaces.elm import ELMNet, synaptic_current


def reference_forward(net: ELMNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The original formulation: one Python step per millisecond, everything through autograd."""
    keep_s = torch.exp(-torch.exp(-net.log_tau_s))
    keep_m = torch.exp(-torch.exp(-net.log_tau_m))
    gain_m = 1 - keep_m
    drive = ((1 - keep_s)[:, None] * net.inp(x)).permute(2, 0, 1)
    w_m = net.mem_in.weight.t()
    z = torch.zeros_like(drive[0])
    m = z.new_zeros(z.shape[0], keep_m.shape[0])
    states = []
    for d_t in drive.unbind(0):
        z = torch.addcmul(d_t, keep_s, z)
        dm = net.update(torch.addmm(z, m, w_m))
        m = torch.addcmul(m, gain_m, dm - m)
        states.append(m)
    return net.heads(torch.stack(states, 2))


def build(depth: int, activation: str | None, n_in: int = 12, memory: int = 5, width: int = 7) -> ELMNet:
    torch.manual_seed(depth * 7 + len(activation or ""))
    spec = {"family": "elm", "depth": depth, "memory_units": memory, "hidden": [width] * (depth - 1),
            "activation": activation if depth > 1 else None, "tau_min": 1.5, "tau_max": 300.0}
    net = get_family("elm").build(spec, InputMeta.ungrouped(n_in)).double()
    with torch.no_grad():  # move off the initial values so every parameter matters
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def spikes(b: int, n: int, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, n, t, generator=g) < 0.05).double()


@pytest.mark.parametrize("T", [1, 5, 64, 65, 200, 4200])
def test_chunked_scan_equals_the_loop(T):
    g = torch.Generator().manual_seed(T)
    x = torch.randn(3, 4, T, generator=g, dtype=torch.float64)
    log_tau = torch.linspace(math.log(0.5), math.log(2000.0), 4, dtype=torch.float64)
    keep = torch.exp(-torch.exp(-log_tau))
    z, ref = torch.zeros(3, 4, dtype=torch.float64), []
    for t in range(T):
        z = keep * z + (1 - keep) * x[..., t]
        ref.append(z)
    torch.testing.assert_close(synaptic_current(x, log_tau, chunk=8), torch.stack(ref, -1), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(synaptic_current(x, log_tau), torch.stack(ref, -1), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("depth,activation", [(1, None), (2, "relu"), (3, "gelu"), (3, "elu"), (4, "silu"), (2, "tanh")])
@pytest.mark.parametrize("T", [1, 70])
def test_outputs_and_gradients_equal_the_loop(depth, activation, T):
    net = build(depth, activation)
    x = spikes(3, 12, T, seed=depth)
    w = torch.randn(2, 3, T, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss_and_grads(fn):
        net.zero_grad(set_to_none=True)
        s, v = fn(x)
        loss = (w[0] * s).sum() + (w[1] * v).sum() + (s * v).sum()  # nonlinear in the outputs
        loss.backward()
        return (s.detach(), v.detach()), {n: p.grad.clone() for n, p in net.named_parameters()}

    (s_ref, v_ref), g_ref = loss_and_grads(lambda x: reference_forward(net, x))
    (s, v), g = loss_and_grads(net)
    torch.testing.assert_close(s, s_ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(v, v_ref, rtol=1e-9, atol=1e-11)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-8, atol=1e-10, msg=name)


def test_inference_path_equals_the_loop_in_float32():
    """No gradient wanted: the plain loop (as tracing and export see it), float32."""
    net = build(3, "relu").float().eval()
    x = spikes(2, 12, 150, seed=3).float()
    with torch.no_grad():
        for a, b in zip(net(x), reference_forward(net, x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    x64 = x.double()
    net.double()
    for a, b in zip(net(x64), reference_forward(net, x64)):  # training path, float64
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
