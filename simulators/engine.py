"""Wire a built cell for simulation and run one stimulus through it.

Separate from the cell builders so every cell (bundled or custom) gets the same input
placement, recording at 1 ms and somatic spike detection. Input ``k < n_sites`` is the
excitatory input of site ``k``; input ``n_sites + k`` its inhibitory input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells.base import CellModel
from .errors import SimulatorError

EXCITATORY, INHIBITORY = 0, 1


@dataclass
class InputTable:
    """Per-input metadata, in input order (all excitatory inputs, then all inhibitory)."""

    kind: np.ndarray  # int8: 0 excitatory, 1 inhibitory
    group: np.ndarray  # int32: branch id of the input's segment
    section: list[str]
    x: np.ndarray  # float64: position of the segment along its section
    distance_um: np.ndarray  # float64: path distance from soma(0.5)

    def as_json(self) -> dict:
        return {
            "kind": self.kind.tolist(),
            "group": self.group.tolist(),
            "section": list(self.section),
            "x": [round(v, 6) for v in self.x.tolist()],
            "distance_um": [round(v, 3) for v in self.distance_um.tolist()],
        }


@dataclass
class RunResult:
    """Somatic voltage sampled every 1 ms from t=0, and output spike times (ms)."""

    voltage: np.ndarray
    spike_times: np.ndarray


def _standard_synapses(h, cell: CellModel, seg, kind: str) -> list[tuple[object, float]]:
    if kind == "inh":
        return [(h.ns_GABAA(seg), cell.gaba_weight)]
    pairs = [(h.ns_AMPA(seg), cell.ampa_weight)]
    if cell.nmda_weight > 0:
        pairs.append((h.ns_NMDA(seg), cell.nmda_weight))
    return pairs


class CellRunner:
    """A cell with its synapses, NetCons and recorders in place; runs many stimuli."""

    def __init__(self, cell: CellModel) -> None:
        from neuron import h

        self.h = h
        self._pc = h.ParallelContext()  # psolve: the whole run in compiled code, no hoc loop per step
        self.cell = cell
        self.synapses: list[object] = []
        self.netcons: list[list[object]] = []  # per input: the NetCons that share its spike train
        for kind in ("exc", "inh"):
            for seg, _branch in cell.sites:
                made = (
                    cell.synapse_factory(seg, kind)
                    if cell.synapse_factory is not None
                    else _standard_synapses(h, cell, seg, kind)
                )
                ncs = []
                for syn, weight in made:
                    nc = h.NetCon(None, syn)
                    nc.weight[0] = weight
                    nc.delay = 0
                    self.synapses.append(syn)
                    ncs.append(nc)
                self.netcons.append(ncs)
        soma_seg = cell.soma(0.5)
        self._spike_detector = h.NetCon(soma_seg._ref_v, None, sec=cell.soma)
        self._spike_detector.threshold = cell.spike_threshold
        self._spikes = h.Vector()
        self._spike_detector.record(self._spikes)
        self._voltage = h.Vector()
        self._voltage.record(soma_seg._ref_v, 1.0)
        self.inputs = self._input_table()

    def _input_table(self) -> InputTable:
        h, sites = self.h, self.cell.sites
        origin = self.cell.soma(0.5)
        section = [seg.sec.name() for seg, _ in sites]
        x = np.array([seg.x for seg, _ in sites], dtype=np.float64)
        dist = np.array([h.distance(origin, seg) for seg, _ in sites], dtype=np.float64)
        group = np.array([b for _, b in sites], dtype=np.int32)
        n = len(sites)
        return InputTable(
            kind=np.repeat(np.array([EXCITATORY, INHIBITORY], dtype=np.int8), n),
            group=np.concatenate([group, group]),
            section=section + section,
            x=np.concatenate([x, x]),
            distance_um=np.concatenate([dist, dist]),
        )

    @property
    def n_inputs(self) -> int:
        return len(self.netcons)

    def run(self, input_index: np.ndarray, input_ms: np.ndarray, duration_ms: int) -> RunResult:
        """Simulate ``duration_ms`` with input ``input_index[j]`` firing at ``input_ms[j]`` ms."""
        h, cell = self.h, self.cell
        h.CVode().active(0)  # the ns_ synapses are written for the fixed-step method
        h.dt = cell.dt
        if cell.celsius is not None:
            h.celsius = cell.celsius
        self._pc.set_maxstep(10)
        h.finitialize(cell.v_init)  # clears the event queue: queue this run's inputs after it
        netcons = self.netcons
        for k, t in zip(input_index.tolist(), input_ms.tolist()):
            for nc in netcons[k]:
                nc.event(t)
        self._pc.psolve(duration_ms)
        voltage = self._voltage.as_numpy()
        if voltage.size < duration_ms:
            raise SimulatorError(f"recorded {voltage.size} voltage samples for a {duration_ms} ms run")
        return RunResult(
            voltage=np.array(voltage[:duration_ms], dtype=np.float32),
            spike_times=np.array(self._spikes.as_numpy(), dtype=np.float64),
        )
