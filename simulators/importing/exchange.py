"""The exchange format: one ``.npz`` file per simulation, which any simulator's script can
write in a few lines (NEURON, Brian2, Arbor, NEST, BMTK) and ``neurosearch import
exchange`` reads. Versioned by its ``format`` entry; docs/DESIGN.md describes it.

Version 1 (``format = "neurosearch-exchange/1"``):

==================  ==========================  ==============================================
key                 type                        meaning
==================  ==========================  ==============================================
``format``          str                         ``"neurosearch-exchange/1"``
``n_inputs``        int                         number of inputs (synapses or input channels)
``input_events``    float [k, 2]                one row per input spike: (input index, time ms)
``voltage_mv``      float [T]                   somatic voltage, sample i at i ms (1 ms apart)
``output_spike_ms`` float [m]                   somatic spike times, ms
``input_kind``      int [n_inputs], optional    0 excitatory, 1 inhibitory
``input_group``     int [n_inputs], optional    branch id of each input (deep-unit branches)
``split``           str, optional               "train", "valid" or "test"
==================  ==========================  ==============================================

Times become whole-ms bins by flooring (bin t holds [t, t+1)); every time must lie in
[0, T). Every file of one dataset has the same ``n_inputs``, kinds and groups.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .. import storage
from ..spec import SPLITS
from .recording import BadSource, Inputs, Recording, binned

FORMAT = "neurosearch-exchange/1"
REQUIRED = ("format", "n_inputs", "input_events", "voltage_mv", "output_spike_ms")
OPTIONAL = ("input_kind", "input_group", "split")


def write_simulation(
    path: Path | str,
    *,
    n_inputs: int,
    input_events: np.ndarray,
    voltage_mv: np.ndarray,
    output_spike_ms: np.ndarray,
    input_kind: np.ndarray | None = None,
    input_group: np.ndarray | None = None,
    split: str | None = None,
) -> Path:
    """Write one simulation in the exchange format (atomically: a crash leaves no half file).

    ``input_events``: rows of (input index, spike time in ms); ``voltage_mv``: the somatic
    voltage every 1 ms from t = 0; ``output_spike_ms``: the somatic spike times."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "n_inputs": np.array(int(n_inputs)),
        "input_events": np.asarray(input_events, dtype=np.float64).reshape(-1, 2),
        "voltage_mv": np.asarray(voltage_mv, dtype=np.float32).ravel(),
        "output_spike_ms": np.asarray(output_spike_ms, dtype=np.float64).ravel(),
    }
    if input_kind is not None:
        arrays["input_kind"] = np.asarray(input_kind, dtype=np.int8)
    if input_group is not None:
        arrays["input_group"] = np.asarray(input_group, dtype=np.int64)
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        arrays["split"] = np.array(split)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = Path(path)
    storage.write_atomic(path, buffer.getvalue())
    return path


def read_file(path: Path) -> tuple[Inputs, list[Recording]]:
    """The file's input metadata and its one simulation; ``BadSource`` naming the file and
    the problem for anything that is not a complete, consistent exchange file."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                raise BadSource(f"{path}: not a complete .npz file (an exchange file is a NumPy .npz archive)")
        with np.load(path, allow_pickle=False) as npz:
            present = set(npz.files)
            missing = [key for key in REQUIRED if key not in present]
            if missing:
                raise BadSource(f"{path}: not an exchange file: no {', '.join(repr(k) for k in missing)} "
                                f"(it holds {', '.join(sorted(present)) or 'nothing'})")
            data = {key: npz[key] for key in (*REQUIRED, *OPTIONAL) if key in present}
    except BadSource:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        raise BadSource(f"{path}: not a complete .npz file (truncated, or another format): {exc}") from None
    except ValueError as exc:  # a pickled (object) array, or not an npz at all
        raise BadSource(f"{path}: not an exchange file ({exc})") from None
    except OSError as exc:
        raise BadSource(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if str(data["format"]) != FORMAT:
        raise BadSource(f"{path}: format {str(data['format'])!r}; this version reads {FORMAT!r}")
    n_inputs = int(data["n_inputs"])
    voltage = data["voltage_mv"].astype(np.float32).ravel()
    duration = voltage.size
    if n_inputs < 1 or duration < 1:
        raise BadSource(f"{path}: {n_inputs} inputs and {duration} ms of voltage; both must be positive")
    events = data["input_events"]
    if events.ndim != 2 or events.shape[1] != 2:
        raise BadSource(f"{path}: input_events must be rows of (input index, time ms), not shape {events.shape}")
    index = events[:, 0]
    if events.size and (np.any(index != np.round(index)) or index.min() < 0 or index.max() >= n_inputs):
        raise BadSource(f"{path}: input_events names inputs outside 0..{n_inputs - 1}")
    times = binned(events[:, 1], "an input spike", str(path), duration)
    spikes = np.unique(binned(data["output_spike_ms"], "an output spike", str(path), duration))
    split = str(data["split"]) if "split" in data else None
    if split is not None and split not in SPLITS:
        raise BadSource(f"{path}: split {split!r} is not one of {', '.join(SPLITS)}")
    inputs = Inputs(kind=_per_input(data, "input_kind", n_inputs, path, np.int8),
                    group=_per_input(data, "input_group", n_inputs, path, np.int64))
    unique = np.unique(index.astype(np.int64) * duration + times)  # an input spikes at most once per bin
    recording = Recording(input_index=(unique // duration).astype(np.int32), input_time=(unique % duration).astype(np.int32),
                          voltage=voltage, output_spikes=spikes, split=split)
    return inputs, [recording]


def _per_input(data: dict, key: str, n_inputs: int, path: Path, dtype: type) -> np.ndarray:
    if key not in data:
        return np.zeros(n_inputs, dtype=dtype)
    values = data[key].ravel()
    if values.size != n_inputs:
        raise BadSource(f"{path}: {key} has {values.size} entries for {n_inputs} inputs")
    return values.astype(dtype)


def export_dataset(dataset, folder: Path) -> list[Path]:
    """Every simulation of a neurosearch dataset as exchange files in ``folder`` (with its
    split, kinds and branches): the way out to other tools, and the round trip the tests
    check (import gives the same dataset back)."""
    folder = Path(folder)
    split_of = {i: name for name in SPLITS for i in dataset.indices(name)}
    written = []
    for i in range(len(dataset)):
        sim = dataset.load(i)
        written.append(write_simulation(
            folder / f"sim_{i:05d}.npz", n_inputs=dataset.n_inputs,
            input_events=np.column_stack([sim.input_index, sim.input_time]),
            voltage_mv=sim.voltage, output_spike_ms=sim.output_spikes,
            input_kind=dataset.input_kind, input_group=dataset.input_group, split=split_of.get(i)))
    return written
