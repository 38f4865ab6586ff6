"""The worker-process side of dataset generation.

Each worker (a spawned process) loads the compiled mechanisms and builds the cell once,
on its first task, then runs many simulations with it. Tasks carry everything they need
(``WorkerSetup``), so results depend only on the simulation's seed, never on which
worker ran it or how many workers there are.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine import CellRunner
from .spec import StimulusSpec
from .stimulus import spike_trains


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to build the cell and simulate; small and picklable."""

    model: str
    builder: str | None
    morphology: str | None
    mechanism_dirs: tuple[str, ...]  # compiled build folders (see nmodl.compile_mechanisms)
    stimulus: StimulusSpec
    duration_ms: int
    discard_ms: int
    integrator: str = "fixed"
    cvode_atol: float = 1e-3


def start_process(parent_pid: int) -> None:
    """A pool worker's initializer: it never outlives the process that started it.

    Ctrl-C in a terminal reaches the whole process group; workers ignore it and leave
    stopping to the parent, which terminates them (``dataset._simulate``). A parent
    killed outright (SIGKILL, OOM killer) cannot do that, so each worker also watches
    for its parent's death and then exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # re-parented (to init or a subreaper) once the parent is gone
        time.sleep(0.5)
    os._exit(1)


_runner: CellRunner | None = None
_runner_key: tuple | None = None


def runner_for(setup: WorkerSetup) -> CellRunner:
    """This process's cell, built on first use and reused while the cell setup is the same."""
    global _runner, _runner_key
    key = (setup.model, setup.builder, setup.morphology, setup.mechanism_dirs, setup.integrator, setup.cvode_atol)
    if _runner is not None and _runner_key == key:
        return _runner
    os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")  # no "no DISPLAY" banner per worker
    from . import nmodl
    from .cells import build_cell

    for build_dir in setup.mechanism_dirs:
        nmodl.load_compiled(Path(build_dir))
        if setup.integrator == "coreneuron":  # CoreNEURON loads its own copy of the mechanisms from here
            os.environ["CORENEURONLIB"] = str(nmodl.coreneuron_library(Path(build_dir)))
    morphology = Path(setup.morphology) if setup.morphology else None
    _runner = CellRunner(build_cell(setup.model, setup.builder, morphology), setup.integrator, setup.cvode_atol)
    _runner_key = key
    return _runner


def describe(setup: WorkerSetup) -> dict:
    """The cell's input metadata (kind, branch, section, position), as JSON-ready lists."""
    return runner_for(setup).inputs.as_json()


def synapse_knobs(setup: WorkerSetup) -> dict:
    """What sets this cell's synaptic strength, for advice a user can act on: its own
    ``synapse_factory`` (CellModel's weights are then unused) or CellModel's weights."""
    cell = runner_for(setup).cell
    return {"factory": cell.synapse_factory is not None, "ampa_weight": cell.ampa_weight,
            "nmda_weight": cell.nmda_weight, "gaba_weight": cell.gaba_weight, "spike_threshold": cell.spike_threshold}


def count_spikes(setup: WorkerSetup, seed: int, run_ms: int) -> tuple[int, int]:
    """A calibration probe: the first ``run_ms`` of a simulation drawn exactly like the
    dataset's (its stimulus made for the whole ``duration_ms``, since each simulation's
    drive is normalised over its length and longer ones keep more of the slow
    fluctuations that make spikes). Returns the output spikes after the discard, and the
    threshold crossings there that never repolarised (a depolarised soma)."""
    done = simulate(setup, -1, seed, run_ms)
    return int(done["arrays"]["output_spikes"].size), done["held"]


def spontaneous_spikes(setup: WorkerSetup) -> int:
    """Output spikes after the discard of one simulation without any input: a cell that
    fires here fires on its own, whatever the drive."""
    runner = runner_for(setup)
    none = np.zeros(0, dtype=np.int64)
    spike_times = runner.run(none, none.astype(np.float64), setup.duration_ms).spike_times
    return int(np.sum(spike_times >= setup.discard_ms))


def simulate(setup: WorkerSetup, index: int, seed: int, run_ms: int | None = None) -> dict:
    """Run simulation ``index`` (stimulus drawn from ``seed``), or only its first ``run_ms``;
    everything before ``discard_ms`` is dropped and times are re-based to the end of the discard."""
    runner = runner_for(setup)
    rng = np.random.default_rng(seed)
    inputs = runner.inputs
    input_index, input_ms = spike_trains(rng, setup.stimulus, inputs.kind, inputs.group, setup.duration_ms)
    duration = setup.duration_ms if run_ms is None else min(run_ms, setup.duration_ms)
    if duration < setup.duration_ms:
        ran = input_ms < duration
        input_index, input_ms = input_index[ran], input_ms[ran]
    started = time.perf_counter()
    result = runner.run(input_index, input_ms, duration)
    wall_s = time.perf_counter() - started
    discard = setup.discard_ms
    kept = input_ms >= discard
    spike_bins = np.floor(result.spike_times).astype(np.int64)
    spike_bins = np.unique(spike_bins[(spike_bins >= discard) & (spike_bins < duration)]) - discard
    return {
        "index": index,
        "wall_s": wall_s,
        "held": int(np.sum((result.held_times >= discard) & (result.held_times < duration))),
        "arrays": {
            "input_index": input_index[kept].astype(np.int32),
            "input_time": (input_ms[kept] - discard).astype(np.int32),
            "voltage": result.voltage[discard:duration].astype(np.float32),
            "output_spikes": spike_bins.astype(np.int32),
        },
    }
