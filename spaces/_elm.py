"""The torch half of the elm family (``elm.py`` holds its search space and depth rule):
imported when a network is built, so that loading ``search.toml`` needs no torch."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import Heads, hidden_init_, make_activation
from .base import InputMeta
from .elm import SYNAPSE_TAU_INIT


class ELMNet(nn.Module):
    """State: memory m (M units, time constants tau_m) and a synaptic current z (F channels,
    time constants tau_s). Each ms::

        z_t  = l_s * z_{t-1} + (1 - l_s) * (W_x x_t + b)        l = exp(-1 ms / tau)
        h_1  = act(z_t + W_m m_{t-1})                            (depth >= 2)
        h_j  = act(W_j h_{j-1} + b_j)                            j = 2 .. depth-1
        dm_t = tanh(W_o h_{depth-1} + b_o)   (depth 1: dm_t = tanh(z_t + W_m m_{t-1}))
        m_t  = l_m * m_{t-1} + (1 - l_m) * dm_t
        (spike_logit_t, voltage_t) = linear(m_t)

    The synaptic filter is linear, so z is computed for all t at once (``synaptic_current``,
    a chunked scan); the memory update is a nonlinear function of the previous memory, so
    it stays a loop over time (no exact parallel form), whose backward is hand-written
    (``_Recurrence``) when gradients are wanted.
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
        keep_m = torch.exp(-torch.exp(-self.log_tau_m))
        # the synaptic current is linear in the input: all time steps at once (chunked scan)
        z = synaptic_current(self.inp(x), self.log_tau_s).permute(2, 0, 1)  # [T, B, F]
        w_m = self.mem_in.weight.t()
        linears = [m for m in self.update if isinstance(m, nn.Linear)]
        if _use_fast_recurrence(z, self):
            states = _Recurrence.apply(z, keep_m, w_m, self.spec["activation"] or "tanh",
                                       *[p for lin in linears for p in (lin.weight, lin.bias)])
        else:
            states = self._loop(z, keep_m, w_m)
        return self.heads(states.permute(1, 2, 0))  # memory [B, units, T] -> two [B, T]

    def _loop(self, z: torch.Tensor, keep_m: torch.Tensor, w_m: torch.Tensor) -> torch.Tensor:
        """The memory recurrence, step by step through autograd (inference, tracing, export)."""
        gain_m = 1 - keep_m
        m = z.new_zeros(z.shape[1], keep_m.shape[0], dtype=torch.promote_types(keep_m.dtype, torch.float32))
        states = []
        for z_t in z.unbind(0):
            dm = self.update(torch.addmm(z_t, m, w_m))  # memory update from input and memory
            m = torch.addcmul(m, gain_m, dm - m)  # leaky integration: keep_m * m + gain_m * dm
            states.append(m)
        return torch.stack(states, 0)


# --------------------------------------------------------------------------- parallel parts

#: time steps per block of the chunked scan: a [L, L, F] decay matrix per level
SCAN_CHUNK = 64


def synaptic_current(x_proj: torch.Tensor, log_tau: torch.Tensor, chunk: int = SCAN_CHUNK) -> torch.Tensor:
    """``z_t = l * z_{t-1} + (1 - l) * x_t`` (``l = exp(-1/tau)``, z_{-1} = 0) for all t of
    ``x_proj`` [B, F, T] at once.

    The filter is linear with a time-invariant decay, so each block of ``chunk`` steps is
    one matrix product with the lower-triangular decay matrix ``l**(i-j)`` and the blocks'
    end values are the same scan one level up (decay ``l**chunk``), applied recursively:
    a few large products instead of T small steps, and only decays <= 1 are ever formed
    (no ``l**-t`` growth), so it is as stable as the loop."""
    inv_tau = torch.exp(-log_tau)  # -log(l) per channel, [F]
    drive = (1 - torch.exp(-inv_tau))[:, None] * x_proj  # (1 - l) * x, as the loop did
    return _decay_scan(drive, inv_tau, chunk)


def _decay_scan(d: torch.Tensor, rate: torch.Tensor, chunk: int) -> torch.Tensor:
    """``y_t = exp(-rate) * y_{t-1} + d_t`` along the last dim of d [B, F, T]."""
    B, F_, T = d.shape
    L = min(chunk, T)
    n = -(-T // L)
    pad = n * L - T
    if pad:
        d = torch.nn.functional.pad(d, (0, pad))
    lag = torch.arange(L, device=d.device, dtype=rate.dtype)
    lags = lag[:, None] - lag[None, :]  # i - j
    decay = torch.exp(-rate[:, None, None] * lags.clamp(min=0)) * (lags >= 0)  # [F, L(i), L(j)]
    blocks = d.reshape(B, F_, n, L)
    local = torch.einsum("fij,bfcj->bfci", decay.to(blocks.dtype), blocks)  # scan inside each block
    if n > 1:
        ends = _decay_scan(local[..., -1], rate * L, chunk)  # [B, F, n]: y at each block's end
        carry = torch.nn.functional.pad(ends[..., :-1], (1, 0))  # y entering each block
        into = torch.exp(-rate[:, None] * (lag + 1))  # [F, L]: decay of the carry at step i
        local = local + carry[..., None] * into[None, :, None, :]
    return local.reshape(B, F_, n * L)[..., :T]


def _use_fast_recurrence(z: torch.Tensor, net: nn.Module) -> bool:
    """The hand-derived backward pays off only when a gradient is wanted; tracing,
    export and compilation see the plain loop, which they can follow."""
    if not torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    return z.requires_grad or any(p.requires_grad for p in net.parameters())


_ACT_FN = {
    "relu": torch.relu,
    "gelu": torch.nn.functional.gelu,
    "elu": torch.nn.functional.elu,
    "tanh": torch.tanh,
    "silu": torch.nn.functional.silu,
}


def _act_grad(name: str, u: torch.Tensor) -> torch.Tensor:
    """d act(u) / du, elementwise, for the activations of ``base.ACTIVATIONS``."""
    if name == "relu":
        return (u > 0).to(u.dtype)
    if name == "elu":
        return torch.where(u > 0, torch.ones_like(u), torch.exp(u))
    if name == "tanh":
        return 1 - torch.tanh(u) ** 2
    if name == "silu":
        s = torch.sigmoid(u)
        return s * (1 + u * (1 - s))
    if name == "gelu":  # exact (erf) GELU, as nn.GELU()
        cdf = 0.5 * (1 + torch.erf(u / math.sqrt(2.0)))
        return cdf + u * torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    raise ValueError(f"no derivative for activation {name!r}")


class _Recurrence(torch.autograd.Function):
    """The memory recurrence with backpropagation through time written out by hand.

    Autograd would record ~10 nodes per millisecond and replay them one by one; here the
    forward runs without recording, the backward loop does only the per-step products
    that depend on the next step's gradient, and everything that does not (activation
    derivatives, all weight gradients) is done once over all T steps as large products.
    Computed in float32 (autocast off inside), like the loop's memory state."""

    @staticmethod
    def forward(ctx, z, keep, w_m, act, *linear_params):  # type: ignore[override]
        with torch.autocast(z.device.type, enabled=False):
            dtype = torch.promote_types(keep.dtype, torch.float32)  # float32, or float64 when asked
            z, keep, w_m = z.to(dtype), keep.to(dtype), w_m.to(dtype)
            params = [p.to(dtype) for p in linear_params]
            weights_t = [w.t() for w in params[0::2]]
            biases = params[1::2]
            gain = 1 - keep
            fn = _ACT_FN[act]
            T, B, _ = z.shape
            m = z.new_zeros(B, keep.shape[0])
            states, dms = [], []
            pre = [[] for _ in weights_t]  # inputs of each activation (hidden layers), per step
            for z_t in z.unbind(0):
                u = torch.addmm(z_t, m, w_m)
                for k, (w_t, b) in enumerate(zip(weights_t, biases)):
                    pre[k].append(u)
                    u = torch.addmm(b, fn(u), w_t)
                dm = torch.tanh(u)
                m = torch.lerp(m, dm, gain)
                dms.append(dm)
                states.append(m)
            states_t = torch.stack(states, 0)
            pre_t = [torch.stack(p, 0) for p in pre]
            ctx.act = act
            ctx.save_for_backward(keep, w_m, states_t, torch.stack(dms, 0), *pre_t, *params)
        return states_t

    @staticmethod
    def backward(ctx, grad_states):  # type: ignore[override]
        keep, w_m, states, dms, *rest = ctx.saved_tensors
        n_lin = len(rest) // 3
        pre, params = rest[:n_lin], rest[n_lin:]
        weights = params[0::2]  # (biases need no gradient term beyond the pre-activation one)
        with torch.autocast(states.device.type, enabled=False):
            grad_states = grad_states.to(keep.dtype)
            gain = 1 - keep
            fn = _ACT_FN[ctx.act]
            # step-independent factors, once for all T
            d_tanh = gain * (1 - dms * dms)  # d m_t / d (tanh input), [T, B, M]
            d_act = [_act_grad(ctx.act, u) for u in pre]
            w_m_t = w_m.t()
            T = states.shape[0]
            g = grad_states[T - 1].clone()
            g_m, g_pre = [None] * T, [[None] * T for _ in range(n_lin)]
            g_u1 = [None] * T
            for t in range(T - 1, -1, -1):
                g_m[t] = g
                g_u = g * d_tanh[t]
                for k in range(n_lin - 1, -1, -1):
                    g_u = torch.mm(g_u, weights[k]) * d_act[k][t]
                    g_pre[k][t] = g_u
                g_u1[t] = g_u
                if t:
                    g = torch.addcmul(grad_states[t - 1], keep, g).addmm_(g_u, w_m_t)
            g_m_all = torch.stack(g_m, 0)  # dL/dm_t, [T, B, M]
            g_z = torch.stack(g_u1, 0)  # dL/du_1 = dL/dz_t
            prev = torch.cat([torch.zeros_like(states[:1]), states[:-1]], 0)  # m_{t-1}
            flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
            grad_keep = (g_m_all * (prev - dms)).sum((0, 1))  # m_t = dm + keep * (m_{t-1} - dm)
            grad_w_m = flat(prev).t() @ flat(g_z)
            grads: list[torch.Tensor] = []
            for k in range(n_lin):
                # linear k feeds activation k+1, or the tanh after the last one
                g_out = flat(torch.stack(g_pre[k + 1], 0)) if k + 1 < n_lin else flat(g_m_all * d_tanh)
                h = flat(fn(pre[k]))
                grads += [g_out.t() @ h, g_out.sum(0)]
        return (g_z, grad_keep, grad_w_m, None, *grads)
