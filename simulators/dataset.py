"""Public API: generate a simulated dataset (cached, resumable, checksummed) and read it.

A dataset lives in ``cache_dir/<config_hash>/``: one ``.npz`` shard per simulation under
``shards/`` and a ``manifest.json`` that records the spec, seeds, split, input metadata
and every shard's sha256. The manifest is rewritten after each finished shard, so an
interrupted generation knows exactly which shards are done; ``status`` turns
``"complete"`` only when all are. ``generate_part`` simulates one part of a dataset
on one of many machines (see ``parts.py``); ``generate`` merges the parts.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import platform
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from . import calibrate, nmodl, storage, worker
from .errors import CalibrationError, SimulatorError
from .locking import exclusive_lock
from .parts import Part, PartResult, merge_records, part_records
from .spec import SPLITS, CustomModelSpec, SimulationSpec, StimulusSpec

FORMAT_VERSION = 1
log = logging.getLogger(__name__)

__all__ = [
    "CustomModelSpec", "Dataset", "Part", "PartResult", "Simulation", "SimulationSpec", "StimulusSpec",
    "calibrate_drive", "generate", "generate_part",
]


@dataclass
class Simulation:
    """One simulation after the discard: sparse inputs, somatic voltage and output spikes at 1 ms."""

    input_index: np.ndarray  # int32, which input each input spike belongs to
    input_time: np.ndarray  # int32, ms bin of each input spike (0 .. T-1)
    voltage: np.ndarray  # float32 [T], somatic voltage (mV)
    output_spikes: np.ndarray  # int32, ms bins of somatic spikes
    n_inputs: int

    @property
    def duration_ms(self) -> int:
        return int(self.voltage.shape[0])

    def dense_input(self) -> np.ndarray:
        """uint8 ``[n_inputs, T]`` 0/1 matrix (each input spikes at most once per bin)."""
        dense = np.zeros((self.n_inputs, self.duration_ms), dtype=np.uint8)
        dense[self.input_index, self.input_time] = 1
        return dense


class Dataset:
    """A complete dataset on disk. Build one with ``generate`` or ``Dataset.open``."""

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.config_hash: str = manifest["config_hash"]
        self.n_inputs: int = int(manifest["n_inputs"])
        self.duration_ms: int = int(manifest["duration_ms"])
        inputs = manifest["inputs"]
        self.input_kind = np.asarray(inputs["kind"], dtype=np.int8)
        self.input_group = np.asarray(inputs["group"], dtype=np.int64)
        self.input_section: list[str] = list(inputs["section"])
        self.input_x = np.asarray(inputs["x"], dtype=np.float64)
        self.input_distance_um = np.asarray(inputs["distance_um"], dtype=np.float64)
        self.wall_s_per_simulated_s: float | None = manifest.get("wall_s_per_simulated_s")
        self.generated: list[int] = []
        """Simulations run by the ``generate`` call that returned this (empty: a cache hit)."""
        self.merged: list[int] = []
        """Simulations that call took from the records of parts (``generate_part``)."""

    @classmethod
    def open(cls, path: Path, *, verify: bool = True) -> "Dataset":
        """Open a finished dataset; with ``verify``, check every shard against its checksum."""
        path = Path(path)
        manifest = storage.read_manifest(path)
        if manifest is None:
            raise SimulatorError(f"{path} holds no readable dataset manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SimulatorError(
                f"dataset {path} has format version {manifest.get('format_version')}, expected {FORMAT_VERSION}"
            )
        if manifest.get("status") != "complete":
            done = sum(entry is not None for entry in manifest.get("shards", []))
            raise SimulatorError(
                f"dataset {path} is incomplete ({done} of {manifest.get('n_simulations')} simulations); "
                "run generation again to resume it"
            )
        if verify:
            bad = _bad_shards(path, manifest)
            if bad:
                raise SimulatorError(
                    f"dataset {path} is corrupt: shard(s) {', '.join(map(str, bad))} missing or failing "
                    "their checksum; run generation again to regenerate them"
                )
        return cls(path, manifest)

    def indices(self, split: str) -> list[int]:
        """Simulation indices of ``split`` ("train", "valid" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        return list(self.manifest["split"][split])

    def load(self, i: int) -> Simulation:
        """Read simulation ``i`` from its shard."""
        entry = self.manifest["shards"][i]
        arrays = storage.read_shard(self.path / entry["file"])
        return Simulation(n_inputs=self.n_inputs, **arrays)

    def __len__(self) -> int:
        return int(self.manifest["n_simulations"])

    def output_rates_hz(self, split: str | None = None) -> np.ndarray:
        """Output firing rate of each simulation (of ``split``, or all), from the manifest."""
        ids = range(len(self)) if split is None else self.indices(split)
        seconds = self.duration_ms / 1000.0
        return np.array([self.manifest["shards"][i]["n_output_spikes"] / seconds for i in ids], dtype=np.float64)

    def rate_summary(self) -> str:
        """One line on how the ground truth fires: mean (against the calibration's target),
        median and 5–95% range of the output rate per simulation, and how many are silent."""
        rates = self.output_rates_hz()
        silent = int(np.sum(rates == 0))
        low, median, high = np.percentile(rates, [5, 50, 95])
        target = self.target_rate_hz()
        text = (f"output rate per simulation: mean {rates.mean():.2f} Hz"
                + (f" (target {target:g} Hz)" if target is not None else "")
                + f", median {median:.2f} Hz (5–95%: {low:.2f}–{high:.2f} Hz); "
                f"silent {silent} of {rates.size} ({100.0 * silent / rates.size:.1f}%); "
                f"{int(sum(e['n_output_spikes'] for e in self.manifest['shards']))} output spikes")
        held = sum(e.get("n_held", 0) for e in self.manifest["shards"])
        if held:
            text += (f"; {held} threshold crossings without a repolarisation (a soma held depolarised, not counted) "
                     f"in {sum(e.get('n_held', 0) > 0 for e in self.manifest['shards'])} simulations")
        scale = (self.manifest.get("calibration") or {}).get("rate_scale")
        return text + (f"; calibrated drive {scale[0]:.3g}–{scale[1]:.3g}× nominal" if scale else "")

    def cell(self) -> str:
        """The simulated model as a user names it: ``l5pc``, ``custom:<the builder's folder>``,
        or ``imported:<the name given to neurosearch import>``."""
        spec = self.manifest["spec"]
        if spec.get("model") == "imported":
            return f"imported:{spec.get('name')}"
        if spec.get("model") != "custom" or not spec.get("custom"):
            return str(spec.get("model"))
        return f"custom:{Path(spec['custom']['builder'].rsplit(':', 1)[0]).parent.name}"

    def summary(self) -> dict[str, float | int | str | None]:
        """What a study records of its dataset, so that studies of several cells can be read
        side by side without the dataset files: the cell, the size, the mean output rate and
        NEURON's cost in core-seconds (None where the manifest holds no timing)."""
        speed = self.wall_s_per_simulated_s
        return {
            "cell": self.cell(),
            "simulations": len(self),
            "duration_ms": self.duration_ms,
            "n_inputs": self.n_inputs,
            "mean_rate_hz": round(float(self.output_rates_hz().mean()), 4),
            "neuron_core_s": None if not speed else round(speed * len(self) * self.duration_ms / 1000.0, 1),
        }

    def target_rate_hz(self) -> float | None:
        """The mean output rate the drive was calibrated to (None: not centred, or given outright)."""
        centring = (self.manifest.get("calibration") or {}).get("centring")
        return None if not centring else float(centring["target_hz"])

    def rate_warning(self) -> str | None:
        """A line when the realised mean rate misses the calibration's target by more than
        RATE_TOLERANCE (the promise ``simulate`` prints), else None."""
        target = self.target_rate_hz()
        mean = float(self.output_rates_hz().mean())
        if target is None or abs(mean / target - 1.0) <= RATE_TOLERANCE:
            return None
        return (f"warning: the simulations fire at a mean {mean:.2f} Hz, {100 * (mean / target - 1):+.0f}% off the "
                f"calibrated target of {target:g} Hz (more than ±{100 * RATE_TOLERANCE:.0f}%): raise "
                "[simulator.stimulus] calibration_check or calibration_probes and simulate again")

    def __repr__(self) -> str:
        return f"Dataset({self.path}, {len(self)} simulations × {self.duration_ms} ms, {self.n_inputs} inputs)"


RATE_TOLERANCE = 0.25
"""How far the dataset's mean output rate may be from the calibrated target without a warning."""


def simulation_seed(seed: int, index: int) -> int:
    """Seed of simulation ``index``: a function of (seed, index) only."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def _bad_shards(folder: Path, manifest: dict, indices: Iterable[int] | None = None) -> list[int]:
    """Indices (of ``indices``; default all) whose shard is unrecorded, missing, or fails its checksum."""
    bad = []
    for i in range(len(manifest["shards"])) if indices is None else indices:
        entry = manifest["shards"][i]
        if entry is None:
            bad.append(i)
            continue
        path = folder / entry["file"]
        if not path.is_file() or storage.file_sha256(path) != entry["sha256"]:
            bad.append(i)
    return bad


def _new_manifest(spec: SimulationSpec, key: str) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "status": "incomplete",
        "config_hash": key,
        "spec": spec.model_dump(mode="json"),
        "custom_model": spec.custom.content_digest() if spec.custom else None,
        "neuron_version": nmodl.neuron_version(),
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_simulations": spec.n_simulations,
        "duration_ms": spec.recorded_ms,
        "discard_ms": spec.discard_ms,
        "seeds": [simulation_seed(spec.seed, i) for i in range(spec.n_simulations)],
        "split": spec.split_indices(),
        "n_inputs": None,
        "inputs": None,
        "shards": [None] * spec.n_simulations,
        "wall_s_per_simulated_s": None,
    }


def _start_record(spec: SimulationSpec, key: str, path: Path, cache_dir: Path) -> dict:
    """The manifest (or part record) at ``path`` if it belongs to this config (resume), else a
    fresh one. Without a drive calibration, it takes the cached one if there is one, so that
    every part of a dataset and its merge agree on the drive before comparing records."""
    old = storage.read_record(path)
    fresh = _new_manifest(spec, key)
    record = fresh
    if old is not None and old.get("format_version") == FORMAT_VERSION and old.get("config_hash") == key:
        if len(old.get("shards", [])) == spec.n_simulations and old.get("seeds") == fresh["seeds"]:
            record = old
    if spec.stimulus.rate_scale is None and record.get("calibration") is None:
        record["calibration"] = calibrate.cached_calibration(cache_dir, spec)[1]
    return record


def _worker_setup(spec: SimulationSpec) -> worker.WorkerSetup:
    """Compile mechanisms here (once, before any worker starts) and describe the cell for workers."""
    folders = [nmodl.bundled_mechanisms(spec.integrator)]
    builder = morphology = None
    if spec.custom is not None:
        custom = spec.custom
        if custom.mechanisms is not None:
            folders.append(custom.mechanisms.expanduser())
        builder = f"{custom.builder_file.resolve()}:{custom.builder_function}"
        morphology = str(custom.morphology.expanduser().resolve()) if custom.morphology else None
    if spec.integrator == "coreneuron":  # CoreNEURON loads one mechanism library: all folders in one build
        build_dirs = [nmodl.compile_mechanisms(nmodl.merged_sources(folders) if len(folders) > 1 else folders[0],
                                               coreneuron=True)]
    else:
        build_dirs = [nmodl.compile_mechanisms(folder) for folder in folders]
    return worker.WorkerSetup(
        model=spec.model,
        builder=builder,
        morphology=morphology,
        mechanism_dirs=tuple(str(d) for d in build_dirs),
        stimulus=spec.stimulus,
        duration_ms=spec.duration_ms,
        discard_ms=spec.discard_ms,
        integrator=spec.integrator,
        cvode_atol=spec.cvode_atol,
    )


def _progress(enabled: bool):
    """A rich progress bar on stderr (a no-op when disabled)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _summarise_speed(manifest: dict) -> None:
    timed = [e for e in manifest["shards"] if e is not None and e.get("wall_s") is not None]
    simulated_s = sum(e["simulated_s"] for e in timed)
    manifest["wall_s_per_simulated_s"] = round(sum(e["wall_s"] for e in timed) / simulated_s, 4) if timed else None


def _calibrated(spec: SimulationSpec, setup: worker.WorkerSetup, manifest: dict, cache_dir: Path,
                pool: ProcessPoolExecutor, bar) -> worker.WorkerSetup:
    """The worker setup with the stimulus' drive range fixed: as given, as recorded in the
    manifest (a resumed dataset), from the calibration cache, or measured now."""
    if spec.stimulus.rate_scale is not None:
        return setup
    record = manifest.get("calibration")
    if record is None:
        path, record = calibrate.cached_calibration(cache_dir, spec)
        if record is None:
            task = bar.add_task(f"calibrating {spec.model} drive", total=None)
            try:
                record = calibrate.calibrate(spec, setup, pool, lambda done, total: bar.update(task, completed=done,
                                                                                                total=total))
            except CalibrationError as failed:  # keep the measured curve where the user can read it
                kept = path.with_suffix(".failed.json")
                calibrate.save_calibration(kept, failed.record)
                raise SimulatorError(f"{failed} (kept in {kept})") from None
            calibrate.save_calibration(path, record)
        manifest["calibration"] = record
    stimulus = spec.stimulus.model_copy(update={"rate_scale": tuple(record["rate_scale"])})
    return replace(setup, stimulus=stimulus)


@contextmanager
def _pool(spec: SimulationSpec, n_tasks: int) -> Iterator[ProcessPoolExecutor]:
    """Spawned worker processes for ``n_tasks`` simulations (at least 8 for calibration probes);
    a worker that dies becomes one clear error, and on any interruption (Ctrl-C, SIGTERM, a
    full disk) the running simulations are not waited for: the workers are terminated."""
    n_workers = max(1, min(spec.resolved_processes(), max(n_tasks, 8)))
    pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker.start_process, initargs=(os.getpid(),))
    try:
        yield pool
    except BrokenProcessPool:
        raise SimulatorError(
            f"a simulation worker for model {spec.model!r} died unexpectedly (NEURON crashed or ran out of memory)"
        ) from None
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now (Python 3.14 has ``terminate_workers`` for this;
    earlier versions only hold them in the private ``_processes``)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


@contextmanager
def _one_line_write_errors(folder: Path, record_file: Path | None = None) -> Iterator[None]:
    """A dataset that cannot be written (a full disk, a quota, no permission) is one line
    saying which folder and how many finished simulations its record (the manifest, or a
    part's ``record_file``) keeps, not a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.filename and not Path(exc.filename).resolve().is_relative_to(folder.resolve()):
            raise  # another folder (e.g. the compile cache): the CLI names that file instead
        record = storage.read_record(record_file or folder / storage.MANIFEST) or {}
        kept = sum(entry is not None for entry in record.get("shards", []))
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "the file system holding it is full" if full else (exc.strerror or str(exc))
        raise SimulatorError(
            f"cannot write dataset {folder}: {what}; the {kept} finished simulation(s) are kept: "
            f"{'free some space' if full else 'fix that'} and run the same command again to resume"
        ) from None


def _simulate(spec: SimulationSpec, manifest: dict, folder: Path, todo: list[int], progress: bool,
              record_file: Path | None = None) -> None:
    """Run the ``todo`` simulations in worker processes, saving each shard as it arrives and
    rewriting the record (``record_file``, default the folder's manifest) after each."""
    record_file = record_file or folder / storage.MANIFEST
    setup = _worker_setup(spec)
    simulated_s = spec.duration_ms / 1000.0
    with _pool(spec, len(todo)) as pool:
        described = pool.submit(worker.describe, setup)
        inputs = described.result()
        n_inputs = len(inputs["kind"])
        if manifest["n_inputs"] not in (None, n_inputs):
            raise SimulatorError(
                f"the cell now has {n_inputs} inputs but dataset {folder} was started with "
                f"{manifest['n_inputs']}; delete that folder to start over"
            )
        manifest["n_inputs"], manifest["inputs"] = n_inputs, inputs
        storage.write_record(record_file, manifest)
        with _progress(progress) as bar:
            setup = _calibrated(spec, setup, manifest, folder.parent, pool, bar)
            storage.write_record(record_file, manifest)
            task = bar.add_task(f"simulating {spec.model}", total=len(todo))
            futures = [pool.submit(worker.simulate, setup, i, manifest["seeds"][i]) for i in todo]
            for future in as_completed(futures):  # each shard is saved as soon as it exists
                result = future.result()
                i = result["index"]
                name = storage.shard_name(i)
                with storage.signals_held():  # the shard and the record naming it, or neither
                    sha = storage.write_shard(folder / name, result["arrays"])
                    manifest["shards"][i] = {
                        "file": name,
                        "sha256": sha,
                        "wall_s": round(result["wall_s"], 4),
                        "simulated_s": simulated_s,
                        "n_output_spikes": int(result["arrays"]["output_spikes"].size),
                        "n_held": result["held"],
                    }
                    _summarise_speed(manifest)
                    storage.write_record(record_file, manifest)
                bar.advance(task)


def _check_caller(spec: SimulationSpec) -> None:
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A spawned child re-running an unguarded script (the check multiprocessing itself
        # makes): without this it would wait forever on the dataset lock its parent holds.
        raise SimulatorError(
            "a dataset was generated while a worker process was starting; put the calling code under "
            "`if __name__ == \"__main__\":`"
        )
    if spec.custom is not None:
        spec.custom.check_files()


def calibrate_drive(spec: SimulationSpec, cache_dir: Path, *, progress: bool = True) -> dict | None:
    """The drive calibration of ``spec`` from the cache beside its dataset, measured now if
    absent (None: the config gives the drive). Run once before the parts of a dataset start,
    so that they all find it instead of each measuring it."""
    _check_caller(spec)
    if spec.stimulus.rate_scale is not None:
        return None
    record: dict = {}
    with _pool(spec, 0) as pool, _progress(progress) as bar:
        _calibrated(spec, _worker_setup(spec), record, Path(cache_dir), pool, bar)
    return record["calibration"]


def generate_part(spec: SimulationSpec, cache_dir: Path, part: Part, *, progress: bool = True) -> PartResult:
    """Simulate part K of N of ``spec``'s dataset into its folder under ``cache_dir`` (shared
    by all parts), skipping every simulation that a record (the manifest, this or another
    part's) holds with a valid shard. Writes only shards and this part's record, and takes
    no lock, so parts can run at once on many machines; ``generate`` merges them."""
    _check_caller(spec)
    key = spec.config_hash()
    folder = Path(cache_dir) / key
    record_file = part.record_file(folder)
    mine = part.indices(spec.n_simulations)
    with _one_line_write_errors(folder, record_file):
        record = _start_record(spec, key, record_file, Path(cache_dir))
        record["part"] = [part.k, part.n]
        manifest = storage.read_manifest(folder)
        others = [r for r in (manifest, *part_records(folder)) if r is not None]
        taken = merge_records(record, others, mine)
        todo = _bad_shards(folder, record, mine)
        for i in todo:
            record["shards"][i] = None
        if todo:
            record["status"] = "incomplete"
            _simulate(spec, record, folder, todo, progress, record_file)
        if todo or taken or record.get("status") != "complete":
            record["status"] = "complete"  # (this part's simulations)
            storage.write_record(record_file, record)
    overall = {"config_hash": key, "shards": [None] * spec.n_simulations, "calibration": record.get("calibration")}
    merge_records(overall, [record, *others])
    missing = [i for i, entry in enumerate(overall["shards"]) if entry is None]
    merged = manifest is not None and manifest.get("config_hash") == key and manifest.get("status") == "complete"
    return PartResult(folder=folder, part=part, indices=mine, generated=sorted(todo), missing=missing, merged=merged)


def generate(spec: SimulationSpec, cache_dir: Path, *, progress: bool = True) -> Dataset:
    """Return the dataset for ``spec`` under ``cache_dir/<config_hash>/``, simulating only
    what is missing: nothing on a cache hit, the rest after an interruption, and any shard
    whose checksum no longer matches. Shards recorded by parts (``generate_part``) are
    merged, not simulated again. Simulations run in ``spec.processes`` spawned worker
    processes; simulation i is seeded from (seed, i) alone."""
    _check_caller(spec)
    key = spec.config_hash()
    folder = Path(cache_dir) / key
    with _one_line_write_errors(folder), exclusive_lock(folder / ".lock"):
        manifest = _start_record(spec, key, folder / storage.MANIFEST, Path(cache_dir))
        merged = merge_records(manifest, part_records(folder))
        todo = _bad_shards(folder, manifest)
        for i in todo:
            if manifest["shards"][i] is not None:
                log.warning("dataset %s: shard %d is missing or corrupt; simulating it again", folder, i)
                manifest["shards"][i] = None
        if not todo and manifest["status"] == "complete":
            return Dataset(folder, manifest)
        manifest["status"] = "incomplete"
        manifest["spec"] = spec.model_dump(mode="json")
        _summarise_speed(manifest)
        storage.write_manifest(folder, manifest)
        if todo:
            _simulate(spec, manifest, folder, todo, progress)
        manifest["status"] = "complete"
        manifest["completed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        storage.write_manifest(folder, manifest)
    dataset = Dataset(folder, manifest)
    dataset.generated = sorted(todo)
    dataset.merged = sorted(set(merged) - set(todo))
    return dataset
