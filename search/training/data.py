"""A dataset split held on the training device, densified from sparse spikes on the fly.

Inputs stay sparse (one flat, sorted event list per split) so thousands of synapses
over hours of simulated time fit in device memory; each training batch gathers its
windows' events with ``searchsorted`` and scatters them into a dense
``[B, inputs, window]`` tensor on the device: no host↔device copy per step.
"""

from __future__ import annotations

import numpy as np
import torch

from neurosearch.simulators import Dataset

from ..answer.metrics import clip_voltage
from ..errors import UserError

MIN_SPIKES = 10
MIN_FIRING_SIMULATIONS = 2
"""A split needs this many output spikes, in this many simulations, to mean anything:
a spike AUC over one firing simulation says nothing about the others."""


class SplitTensors:
    """One split (train/valid/test) of a dataset, resident on ``device``."""

    def __init__(self, dataset: Dataset, split: str, device: torch.device, limit: int | None = None) -> None:
        """``limit``: only the split's first ``limit`` simulations (a learning curve's nested parts)."""
        self.sim_ids = dataset.indices(split)[:limit]
        if not self.sim_ids:
            raise ValueError(f"split {split!r} of {dataset.path} holds no simulations")
        self.device = device
        self.n_inputs = dataset.n_inputs
        self.T = dataset.duration_ms
        keys, inputs, spikes, volts = [], [], [], []
        for row, sim_id in enumerate(self.sim_ids):
            sim = dataset.load(sim_id)
            order = np.argsort(sim.input_time, kind="stable")
            keys.append(row * self.T + sim.input_time[order].astype(np.int64))
            inputs.append(sim.input_index[order].astype(np.int64))
            spike = np.zeros(self.T, np.float32)
            spike[sim.output_spikes[(sim.output_spikes >= 0) & (sim.output_spikes < self.T)]] = 1.0
            spikes.append(spike)
            volts.append(clip_voltage(sim.voltage[: self.T]).astype(np.float32))
        n_spikes = int(sum(spike.sum() for spike in spikes))
        firing = int(sum(spike.any() for spike in spikes))
        if n_spikes < MIN_SPIKES or firing < min(MIN_FIRING_SIMULATIONS, len(self.sim_ids)):
            raise UserError(
                f"the {split} split of dataset {dataset.path.name[:12]} holds {n_spikes} output spikes in {firing} of "
                f"{len(self.sim_ids)} simulations: too few to train on or score (at least {MIN_SPIKES} spikes in "
                f"{MIN_FIRING_SIMULATIONS} simulations). Simulate more, or leave [simulator.stimulus] rate_scale "
                "unset so the drive is calibrated to make the cell fire."
            )
        self.keys = torch.from_numpy(np.concatenate(keys)).to(device)
        self.inputs = torch.from_numpy(np.concatenate(inputs)).to(device)
        self.spikes = torch.from_numpy(np.stack(spikes)).to(device)
        self.voltage = torch.from_numpy(np.stack(volts)).to(device)

    def __len__(self) -> int:
        return len(self.sim_ids)

    def dense(self, rows: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
        """Dense 0/1 input ``[len(rows), n_inputs, length]`` for windows starting at ``starts``."""
        batch = rows.numel()
        first = rows * self.T + starts
        lo = torch.searchsorted(self.keys, first)
        hi = torch.searchsorted(self.keys, first + length)
        counts = hi - lo
        owner = torch.repeat_interleave(torch.arange(batch, device=self.device), counts)
        offset = torch.arange(owner.numel(), device=self.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        event = lo[owner] + offset
        x = torch.zeros(batch, self.n_inputs, length, device=self.device)
        x[owner, self.inputs[event], self.keys[event] - first[owner]] = 1.0
        return x

    def sample(self, batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Random training windows: inputs, spike targets and clipped voltage."""
        rows = torch.randint(len(self), (batch,), device=self.device, generator=generator)
        starts = torch.randint(self.T - length + 1, (batch,), device=self.device, generator=generator)
        span = starts[:, None] + torch.arange(length, device=self.device)[None, :]
        return self.dense(rows, starts, length), self.spikes[rows[:, None], span], self.voltage[rows[:, None], span]

    def whole(self, rows: list[int]) -> torch.Tensor:
        index = torch.tensor(rows, device=self.device)
        return self.dense(index, torch.zeros_like(index), self.T)
