"""Beniaguev et al.'s NeuronIO files: the pickles written by their generator
(``simulate_L5PC_and_create_dataset.py``, github SelfishGene/neuron_as_deep_net), read
into recordings the way their own loader (``parse_sim_experiment_file``) reads them.

A file is ``{"Params": {...}, "Results": {"listOfSingleSimulationDicts": [...]}}``; each
simulation holds ``exInputSpikeTimes`` / ``inhInputSpikeTimes`` (segment index → spike
times, whole ms), ``somaVoltageLowRes`` (1 ms, float16) and ``outputSpikeTimes`` (ms).
Inputs are the excitatory synapse of every segment, then the inhibitory one (their
loader's order); an output spike at t ms lands in bin ``int(t - 0.5)``, as in their
loader, so scores compare with theirs.

The files were written by Python 2 (``cPickle``, protocol 2, ``numpy.core`` names) or
by Python 3. They are unpickled with a class whitelist: numpy's array, dtype and scalar
rebuilders and plain containers, nothing else (a pickle can name any code to run, and
these files come from the internet). Arrays of two or more dimensions (the dendritic
voltages, ``dendriticVoltagesLowRes``, 1 GB per file) are never built: their rebuilder
drops the data, so only the 1-D traces and the spike times stay in memory.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .recording import BadSource, Inputs, Recording, binned

KEYS = ("exInputSpikeTimes", "inhInputSpikeTimes", "somaVoltageLowRes", "outputSpikeTimes")
SEGMENT_KEYS = ("allSegmentsType", "allSegments_DistFromSoma", "allSegments_SectionInd")


class _Array:
    """What an ndarray's rebuilder returns while unpickling: the array once its state
    arrives, or nothing for an array of two or more dimensions (dropped, never built)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None) -> None:
        self.array = array

    def __setstate__(self, state: tuple) -> None:
        shape, dtype, fortran, data = state[-4:]  # (version,) shape, dtype, is_fortran, raw data
        if len(shape) >= 2:
            return
        raw = data.encode("latin1") if isinstance(data, str) else bytes(data)
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> _Array:
    return _Array()


def _frombuffer(buffer: Any, dtype: Any, shape: tuple, order: str) -> _Array:  # protocol 5's form
    return _Array(None if len(shape) >= 2 else np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape).copy())


def _scalar(dtype: np.dtype, data: bytes | str | None = None) -> Any:
    """A numpy scalar (a spike time) as a plain Python number: a third of the memory."""
    raw = data.encode("latin1") if isinstance(data, str) else data
    return np.frombuffer(raw, dtype=dtype)[0].item() if raw else dtype.type().item()


#: (module, name) → what unpickling may build; module names as Python 2 and numpy < 2
#: wrote them (numpy.core) and as numpy 2 writes them (numpy._core)
_ALLOWED: dict[tuple[str, str], Any] = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _reconstruct
    _ALLOWED[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _frombuffer
_ALLOWED.update({
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # Python 3's protocol-2 form of bytes
    ("__builtin__", "bytes"): bytes,  # ... and of empty bytes (an empty array's data)
    ("builtins", "bytes"): bytes,
})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"it holds a {module}.{name}, which no NeuronIO file does (refused to load)")
        return found


def _plain(value: Any) -> Any:
    """``value`` with every unpickled array placeholder replaced by its array (or None)."""
    if isinstance(value, _Array):
        return value.array
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def load(path: Path) -> dict:
    """The file's top-level dict, unpickled with the whitelist (``BadSource`` otherwise)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
            if not head.startswith(b"\x80"):
                raise BadSource(f"{path}: not a pickle (a NeuronIO file is a Python pickle, protocol 2 or later)")
            handle.seek(0)
            data = _Unpickler(handle, encoding="latin1").load()
    except BadSource:
        raise
    except EOFError:
        raise BadSource(f"{path}: truncated (the pickle ends early; copy the file again)") from None
    except pickle.UnpicklingError as exc:
        raise BadSource(f"{path}: not a NeuronIO pickle: {exc}") from None
    except OSError as exc:
        raise BadSource(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise BadSource(f"{path}: not a NeuronIO pickle (it breaks off: {type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "Params" not in data or "Results" not in data:
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise BadSource(f"{path}: not a NeuronIO file: expected a dict with 'Params' and 'Results', got {got}")
    return data


def read_file(path: Path) -> tuple[Inputs, list[Recording]]:
    """The cell's inputs (from ``Params``) and every simulation of the file."""
    data = load(path)
    params, results = data["Params"], data["Results"]
    missing = [key for key in SEGMENT_KEYS if key not in params]
    if missing:
        raise BadSource(f"{path}: Params has no {', '.join(repr(k) for k in missing)}")
    sims = results.get("listOfSingleSimulationDicts") if isinstance(results, dict) else None
    if not isinstance(sims, list) or not sims:
        raise BadSource(f"{path}: Results holds no 'listOfSingleSimulationDicts'")
    kinds = list(params["allSegmentsType"])
    n_segments = len(kinds)
    sections = [int(s) for s in params["allSegments_SectionInd"]]
    distance = np.asarray(params["allSegments_DistFromSoma"], dtype=np.float64)
    if len(sections) != n_segments or distance.size != n_segments:
        raise BadSource(f"{path}: Params describes {n_segments} segments but not the same number of positions")
    names = [f"{kind}[{section}]" for kind, section in zip(kinds, sections)]
    inputs = Inputs(kind=np.repeat(np.array([0, 1], np.int8), n_segments),
                    group=np.array(sections * 2, dtype=np.int64),
                    section=names * 2, x=None, distance_um=np.concatenate([distance, distance]))
    stated = params.get("totalSimDurationInSec")
    recordings = [_recording(_plain(sim), n_segments, f"{path}: simulation {i}", stated) for i, sim in enumerate(sims)]
    return inputs, recordings


def _recording(sim: Any, n_segments: int, where: str, stated_s: Any) -> Recording:
    if not isinstance(sim, dict):
        raise BadSource(f"{where} is a {type(sim).__name__}, not a dict")
    missing = [key for key in KEYS if key not in sim]
    if missing:
        raise BadSource(f"{where} has no {', '.join(repr(k) for k in missing)}")
    voltage = sim["somaVoltageLowRes"]
    if not isinstance(voltage, np.ndarray) or voltage.ndim != 1 or voltage.size == 0:
        raise BadSource(f"{where}: somaVoltageLowRes is not a 1-D trace")
    duration = int(voltage.size)
    if stated_s is not None and int(round(float(stated_s) * 1000)) != duration:
        raise BadSource(f"{where}: somaVoltageLowRes holds {duration} ms, but Params says {stated_s} s")
    index, time = [], []
    for offset, key in ((0, "exInputSpikeTimes"), (n_segments, "inhInputSpikeTimes")):
        trains = sim[key]
        if not isinstance(trains, dict):
            raise BadSource(f"{where}: {key} is a {type(trains).__name__}, not a dict of segment → spike times")
        for segment, spikes in trains.items():
            segment = int(segment)
            if not 0 <= segment < n_segments:
                raise BadSource(f"{where}: {key} names segment {segment}, but the cell has {n_segments}")
            bins = binned(np.asarray(spikes, dtype=np.float64), f"{key}[{segment}]", where, duration)
            index.append(np.full(bins.size, offset + segment, dtype=np.int32))
            time.append(bins)
    output = np.asarray(sim["outputSpikeTimes"], dtype=np.float64).ravel()
    # their loader: int(t - 0.5), truncating toward zero; a spike in the last half ms stays in
    spikes = binned(np.clip((output - 0.5).astype(np.int64), 0, None), "outputSpikeTimes", where, duration + 1)
    return Recording(input_index=np.concatenate(index) if index else np.zeros(0, np.int32),
                     input_time=np.concatenate(time) if time else np.zeros(0, np.int32),
                     voltage=voltage.astype(np.float32), output_spikes=np.unique(spikes[spikes < duration]))
