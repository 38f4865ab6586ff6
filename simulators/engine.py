"""Wire a built cell for simulation and run one stimulus through it.

Separate from the cell builders so every cell (bundled or custom) gets the same input
placement, recording at 1 ms and somatic spike detection. Input ``k < n_sites`` is the
excitatory input of site ``k``; input ``n_sites + k`` its inhibitory input.

Three integrators give the same answer to within their accuracy (bench/RESULTS.md):
``fixed`` (NEURON's fixed step at the cell's dt), ``cvode`` (variable step; input events
interrupt it at their exact times, the 1 ms samples are interpolated by CVode itself and
threshold crossings are interpolated too, ``condition_order(2)``) and ``coreneuron``
(the same fixed step in CoreNEURON, which cannot return Dt-sampled or NetCon-recorded
vectors: it records every step and reports spikes through a gid).
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
    """Somatic voltage sampled every 1 ms from t=0, output spike times (ms), and the times
    of threshold crossings that never repolarised (a soma held depolarised)."""

    voltage: np.ndarray
    spike_times: np.ndarray
    held_times: np.ndarray


def _standard_synapses(h, cell: CellModel, seg, kind: str) -> list[tuple[object, float]]:
    if kind == "inh":
        return [(h.ns_GABAA(seg), cell.gaba_weight)]
    pairs = [(h.ns_AMPA(seg), cell.ampa_weight)]
    if cell.nmda_weight > 0:
        pairs.append((h.ns_NMDA(seg), cell.nmda_weight))
    return pairs


class CellRunner:
    """A cell with its synapses, NetCons and recorders in place; runs many stimuli."""

    def __init__(self, cell: CellModel, integrator: str = "fixed", cvode_atol: float = 1e-3) -> None:
        from neuron import h

        self.h = h
        self._pc = h.ParallelContext()  # psolve: the whole run in compiled code, no hoc loop per step
        self.cell = cell
        self.integrator, self.cvode_atol = integrator, cvode_atol
        self._steps_per_ms = round(1.0 / cell.dt)
        if integrator == "coreneuron" and abs(self._steps_per_ms * cell.dt - 1.0) > 1e-9:
            raise SimulatorError(f"integrator = \"coreneuron\" needs a cell dt that divides 1 ms (got {cell.dt})")
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
                    # nc.event(t) delivers at t whatever the delay; CoreNEURON needs a positive one
                    nc.delay = 1.0 if integrator == "coreneuron" else 0
                    self.synapses.append(syn)
                    ncs.append(nc)
                self.netcons.append(ncs)
        soma_seg = cell.soma(0.5)
        if not cell.spike_reset < cell.spike_threshold:
            raise SimulatorError(f"CellModel.spike_reset ({cell.spike_reset:g} mV) must be below spike_threshold "
                                 f"({cell.spike_threshold:g} mV)")
        self._spike_detector = h.NetCon(soma_seg._ref_v, None, sec=cell.soma)
        self._spike_detector.threshold = cell.spike_threshold
        self._spikes = h.Vector()
        self._voltage = h.Vector()
        self._fine = h.Vector()  # every step (cell.dt): whether a crossing repolarised
        if integrator == "coreneuron":
            self._pc.gid_clear()  # one cell per process: gid 0 is this runner's
            self._pc.set_gid2node(0, self._pc.id())
            self._pc.cell(0, self._spike_detector)
            self._pc.spike_record(0, self._spikes, h.Vector())
            self._voltage.record(soma_seg._ref_v)  # every step; sampled at whole ms after the run
        else:
            self._spike_detector.record(self._spikes)
            self._voltage.record(soma_seg._ref_v, 1.0)
            self._fine.record(soma_seg._ref_v, cell.dt)
        self.inputs = self._input_table()

    def _configure_integrator(self) -> None:
        """Switch NEURON to this runner's method; a mechanism that cannot run with it is the user's to fix."""
        cvode = self.h.CVode()
        try:
            cvode.active(int(self.integrator == "cvode"))
        except RuntimeError as exc:  # e.g. "ns_AMPA cannot be used with CVODE": a fixed-step-only mechanism
            raise SimulatorError(f"integrator = \"cvode\": NEURON refuses this cell: {exc}") from None
        if self.integrator == "cvode":
            cvode.atol(self.cvode_atol)
            cvode.condition_order(2)  # spike times interpolated within a step, not the step's end
        cvode.cache_efficient(int(self.integrator == "coreneuron"))  # CoreNEURON needs it

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
        self._configure_integrator()
        h.dt = cell.dt
        if cell.celsius is not None:
            h.celsius = cell.celsius
        self._pc.set_maxstep(10)
        h.finitialize(cell.v_init)  # clears the event queue: queue this run's inputs after it
        netcons = self.netcons
        for k, t in zip(input_index.tolist(), input_ms.tolist()):
            for nc in netcons[k]:
                nc.event(t)
        if self.integrator == "coreneuron":
            from neuron import coreneuron

            with coreneuron(enable=True, verbose=0):
                self._pc.psolve(duration_ms)
            voltage = self._voltage.as_numpy()[:: self._steps_per_ms]
        else:
            self._pc.psolve(duration_ms)
            voltage = self._voltage.as_numpy()
        if voltage.size < duration_ms:
            raise SimulatorError(f"recorded {voltage.size} voltage samples for a {duration_ms} ms run")
        crossings = np.array(self._spikes.as_numpy(), dtype=np.float64)
        fine = (self._voltage if self.integrator == "coreneuron" else self._fine).as_numpy()
        spiked = repolarised(crossings, fine, cell.dt, cell.spike_reset)
        return RunResult(
            voltage=np.array(voltage[:duration_ms], dtype=np.float32),
            spike_times=crossings[spiked],
            held_times=crossings[~spiked],
        )


LAST_SPIKE_MS = 10.0
"""A crossing this close to the end of a run counts as a spike: its repolarisation falls after the run."""


def repolarised(crossings: np.ndarray, fine: np.ndarray, dt: float, reset: float) -> np.ndarray:
    """Which threshold crossings are spikes: those after which the voltage (``fine``, one
    sample per ``dt``) falls below ``reset`` before the next crossing. A crossing implies a
    local maximum above the threshold; the repolarisation is what a soma held depolarised,
    oscillating around the threshold, never shows."""
    starts = np.minimum((crossings / dt).astype(np.int64), max(fine.size - 1, 0))
    ends = np.append(starts[1:], fine.size)
    return np.array([fine.size == 0 or fine[a:max(b, a + 1)].min() < reset
                     or (b == fine.size and (b - a) * dt < LAST_SPIKE_MS) for a, b in zip(starts, ends)], dtype=bool)
