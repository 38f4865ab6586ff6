"""Synthetic spike data for the training and GPU benches: no NEURON needed.

``SyntheticDataset`` duck-types ``simulators.Dataset`` for ``search.data.SplitTensors``:
Poisson inputs at ``rate_hz`` per input (5 Hz = 0.5% of 1 ms bins), a noisy voltage and
one output spike every ``spike_every`` ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class FakeSimulation:
    input_index: np.ndarray
    input_time: np.ndarray
    voltage: np.ndarray
    output_spikes: np.ndarray


class SyntheticDataset:
    def __init__(self, n_inputs: int, n_sims: int, duration_ms: int, rate_hz: float = 5.0, seed: int = 0,
                 spike_every: int = 200) -> None:
        self.n_inputs, self.duration_ms, self.path = n_inputs, duration_ms, Path("synthetic")
        rng = np.random.default_rng(seed)
        self.sims = []
        for _ in range(n_sims):
            n = rng.poisson(n_inputs * duration_ms * rate_hz / 1000)
            idx = rng.integers(0, n_inputs, n).astype(np.int32)
            t = rng.integers(0, duration_ms, n).astype(np.int32)
            v = (-70 + rng.normal(0, 3, duration_ms)).astype(np.float32)
            spikes = np.sort(rng.choice(duration_ms, max(1, duration_ms // spike_every), replace=False)).astype(np.int32)
            self.sims.append(FakeSimulation(idx, t, v, spikes))

    def indices(self, split: str) -> list[int]:
        return list(range(len(self.sims)))

    def load(self, i: int) -> FakeSimulation:
        return self.sims[i]
