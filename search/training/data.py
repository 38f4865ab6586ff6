"""A dataset split held on the training device, densified from sparse spikes on the fly.

Inputs stay sparse (one flat, sorted event list per split) so thousands of synapses
over hours of simulated time fit in device memory; each training batch gathers its
windows' events with ``searchsorted`` and scatters them into a dense
``[B, inputs, window]`` tensor on the device: no host↔device copy per step.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from neurosearch.simulators import Dataset

from ..answer.metrics import clip_voltage
from ..errors import UserError

log = logging.getLogger(__name__)
MIN_SPIKES = 10
MIN_FIRING_SIMULATIONS = 2
"""A split needs this many output spikes, in this many simulations, to mean anything:
a spike AUC over one firing simulation says nothing about the others."""


#: what a split holds on the device: per input spike an int64 key (simulation × T + ms) and
#: an int64 input index; per simulated ms a float32 spike target and a float32 voltage
BYTES_PER_EVENT, BYTES_PER_MS = 16, 8


def resident_bytes(dataset: Dataset, sim_ids: list[int]) -> int:
    """The device memory ``SplitTensors`` takes for these simulations, from the manifest:
    the input spike count an import records, else the shard's size (8 bytes per event on
    disk: an int32 input and an int32 ms, plus the 4-byte voltage per ms)."""
    total = 0
    for i in sim_ids:
        entry = dataset.manifest["shards"][i]
        events = entry.get("n_input_events")
        if events is None:
            size = (dataset.path / entry["file"]).stat().st_size
            events = max(0, size - 4 * dataset.duration_ms) // 8
        total += BYTES_PER_EVENT * int(events) + BYTES_PER_MS * dataset.duration_ms
    return total


def free_bytes(device: torch.device) -> int | None:
    """Memory free for a split on ``device`` now (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:  # Linux: what can be allocated without swapping (free, plus caches the kernel can drop)
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def too_big(needed: int, free: int | None, split: str, dataset: str, device: torch.device) -> str | None:
    """The line that refuses a split which cannot fit (the sparse, resident design's limit:
    1 GiB holds 67 million input spikes), before memory runs out halfway."""
    if free is None or needed <= free:
        return None
    gib = 2 ** 30
    return (f"the {split} split of dataset {dataset} needs {needed / gib:.1f} GiB resident on {device} "
            f"({BYTES_PER_EVENT} bytes per input spike), which has {free / gib:.1f} GiB free: import or simulate "
            "fewer simulations, or use a machine with more memory")


def home_for(needed: int, device: torch.device, free_device: int | None, free_host: int | None,
             what: tuple[str, str]) -> torch.device:
    """Where a split's tensors live: on the training device when they fit; past a GPU's
    memory, in host memory, each batch built there and copied over (slower, but the study
    still trains); past both, a ``UserError`` saying so."""
    if too_big(needed, free_device, *what, device) is None:
        return device
    host = torch.device("cpu")
    if device.type != "cpu":
        if too_big(needed, free_host, *what, host) is None:
            log.warning("the %s split of dataset %s (%.1f GiB) does not fit on %s: held in host memory, each batch "
                        "copied to the device", what[0], what[1], needed / 2 ** 30, device)
            return host
    raise UserError(too_big(needed, free_host if device.type != "cpu" else free_device, *what, host))


class SplitTensors:
    """One split (train/valid/test) of a dataset, resident on ``device``."""

    def __init__(self, dataset: Dataset, split: str, device: torch.device, limit: int | None = None) -> None:
        """``limit``: only the split's first ``limit`` simulations (a learning curve's nested parts)."""
        self.sim_ids = dataset.indices(split)[:limit]
        if not self.sim_ids:
            raise ValueError(f"split {split!r} of {dataset.path} holds no simulations")
        self.device = device
        needed = resident_bytes(dataset, self.sim_ids)
        host = torch.device("cpu")
        self.home = home_for(needed, device, free_bytes(device), None if device.type == "cpu" else free_bytes(host),
                             (split, dataset.path.name[:12]))
        """where the split's tensors live: the training device, or host memory past a GPU's"""
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
        self.keys = torch.from_numpy(np.concatenate(keys)).to(self.home)
        self.inputs = torch.from_numpy(np.concatenate(inputs)).to(self.home)
        self.spikes = torch.from_numpy(np.stack(spikes)).to(self.home)
        self.voltage = torch.from_numpy(np.stack(volts)).to(self.home)

    def __len__(self) -> int:
        return len(self.sim_ids)

    def dense(self, rows: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
        """Dense 0/1 input ``[len(rows), n_inputs, length]`` for windows starting at ``starts``."""
        batch = rows.numel()
        first = rows * self.T + starts
        lo = torch.searchsorted(self.keys, first)
        hi = torch.searchsorted(self.keys, first + length)
        counts = hi - lo
        owner = torch.repeat_interleave(torch.arange(batch, device=self.home), counts)
        offset = torch.arange(owner.numel(), device=self.home) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        event = lo[owner] + offset
        x = torch.zeros(batch, self.n_inputs, length, device=self.home)
        x[owner, self.inputs[event], self.keys[event] - first[owner]] = 1.0
        return x.to(self.device, non_blocking=True)

    def sample(self, batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Random training windows: inputs, spike targets and clipped voltage."""
        # drawn on the training device whatever the split's home: the same draws either way
        rows = torch.randint(len(self), (batch,), device=self.device, generator=generator).to(self.home)
        starts = torch.randint(self.T - length + 1, (batch,), device=self.device, generator=generator).to(self.home)
        span = starts[:, None] + torch.arange(length, device=self.home)[None, :]
        return (self.dense(rows, starts, length), self.spikes[rows[:, None], span].to(self.device, non_blocking=True),
                self.voltage[rows[:, None], span].to(self.device, non_blocking=True))

    def whole(self, rows: list[int]) -> torch.Tensor:
        index = torch.tensor(rows, device=self.home)
        return self.dense(index, torch.zeros_like(index), self.T)
