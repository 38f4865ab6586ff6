"""Import ground truth a user already holds into a neurosearch dataset: the same folder of
checksummed shards and manifest that ``generate`` writes, so a study trains on it with
no second code path (docs/DESIGN.md, "Bring your own ground truth").

Streaming and resumable: one source file is read at a time (memory is bounded by the
largest file, not the dataset), its simulations are checked whole before any is
written, and the manifest records each finished file. An interrupted import (Ctrl-C, a
bad file, a full disk) resumes where it stopped when the same command runs again; files
already imported are not read again. Work happens in ``.import-<sources key>/`` beside
the datasets; once complete the folder is named by the dataset's *content*
(``imported-<hash of shards, split and inputs>``), so the same data imported twice, from
anywhere, is one dataset.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import storage
from ..dataset import FORMAT_VERSION, Dataset, _one_line_write_errors, _progress
from ..errors import SimulatorError
from ..locking import exclusive_lock
from ..spec import SPLITS, split_of
from . import exchange, neuronio
from .recording import BadSource, Inputs, Recording

IMPORTER_VERSION = 1
"""Bump whenever the same source files would give different shards."""
#: format name → (reader of one file, the file names a folder source holds, default discard)
READERS: dict[str, tuple[Callable[[Path], tuple[Inputs, list[Recording]]], tuple[str, ...], int]] = {
    "neuronio": (neuronio.read_file, ("*.p", "*.pickle", "*.pkl"), 500),
    "exchange": (exchange.read_file, ("*.npz",), 0),
}
#: the split rule for sources that name none: the simulators' own (seeded by index)
SPLIT_SEED, SPLIT_FRACTIONS = 0, (0.5, 0.25, 0.25)


@dataclass(frozen=True)
class Source:
    """One file to import, and the split the user put it in (None: not given)."""

    path: Path
    split: str | None

    def identity(self) -> list:
        """[split, absolute path, size, modification time]: a file changed since its import is another file."""
        stat = self.path.stat()
        return [self.split, str(self.path.resolve()), stat.st_size, stat.st_mtime_ns]


def find_sources(fmt: str, given: dict[str | None, list[Path]]) -> list[Source]:
    """The files of every path given (a folder: its files of the format, sorted by name),
    each with its split; a clear error for a path that is missing or holds no such file."""
    if fmt not in READERS:
        raise BadSource(f"unknown format {fmt!r}; choose one of: {', '.join(READERS)}")
    patterns = READERS[fmt][1]
    sources: list[Source] = []
    for split, paths in given.items():
        for path in paths:
            path = Path(path).expanduser()
            if path.is_dir():
                files = sorted({f for pattern in patterns for f in path.glob(pattern) if f.is_file()})
                if not files:
                    raise BadSource(f"{path} holds no {fmt} files ({', '.join(patterns)})")
                sources += [Source(f, split) for f in files]
            elif path.is_file():
                sources.append(Source(path, split))
            else:
                raise BadSource(f"{path} does not exist")
    seen: dict[Path, Source] = {}
    for source in sources:
        other = seen.setdefault(source.path.resolve(), source)
        if other is not source:
            raise BadSource(f"{source.path} is given twice" + (f" (as {other.split} and {source.split})"
                                                              if other.split != source.split else ""))
    return sources


def import_dataset(fmt: str, sources: list[Source], cache_dir: Path, *, name: str, discard_ms: int | None = None,
                   progress: bool = True) -> Dataset:
    """Import ``sources`` (``find_sources``) into a dataset under ``cache_dir``; resume an
    interrupted import of the same sources. Returns the complete dataset."""
    read = READERS[fmt][0]
    discard = READERS[fmt][2] if discard_ms is None else int(discard_ms)
    if discard < 0:
        raise BadSource("the discard must be 0 ms or more")
    key = _sources_key(fmt, sources, discard, name)
    work = Path(cache_dir) / f".import-{key[:16]}"
    with exclusive_lock(Path(cache_dir) / f".import-{key[:16]}.lock"):
        identities = [s.identity() for s in sources]
        done = storage.read_record(Path(cache_dir) / f".import-{key[:16]}.done")
        if done is not None and done.get("sources_key") == key and done.get("files") == identities:
            try:  # imported before, and no file changed since: not read again
                return Dataset.open(Path(cache_dir) / done["dataset"])
            except SimulatorError:
                pass  # gone or damaged since: import again
        manifest = storage.read_manifest(work)
        if manifest is None or manifest.get("sources_key") != key or any(
                entry["simulations"] is not None and entry["identity"] != identity
                for entry, identity in zip(manifest["files"], identities)):  # a file imported before has changed
            manifest = _new_manifest(fmt, sources, discard, name, key)
            storage.write_manifest(work, manifest)
        todo = [i for i, entry in enumerate(manifest["files"]) if entry["simulations"] is None]
        with _progress(progress) as bar:
            task = bar.add_task(f"importing {fmt}", total=len(sources), completed=len(sources) - len(todo))
            for i in todo:
                try:
                    with _one_line_write_errors(work):
                        _import_file(read, sources[i], i, manifest, work, discard)
                except BadSource as exc:
                    kept = sum(entry["simulations"] is not None for entry in manifest["files"])
                    then = (f"the {kept} file(s) imported before it are kept: fix that file and run the same command "
                            "again to go on (with other files, the import starts over)") if kept else \
                        "nothing was imported: fix that file and run the same command again"
                    raise BadSource(f"{exc}; {then}") from None
                bar.advance(task)
        dataset = _finish(manifest, work, Path(cache_dir))
        storage.write_record(Path(cache_dir) / f".import-{key[:16]}.done",
                             {"sources_key": key, "files": identities, "dataset": dataset.path.name})
        return dataset


def _sources_key(fmt: str, sources: list[Source], discard: int, name: str) -> str:
    """The same files (paths and splits, in order) and settings give the same key: the resume
    key. A file may change before it is imported (the fix of a bad file); one that changes
    after is caught by its recorded identity."""
    text = json.dumps([IMPORTER_VERSION, fmt, discard, name, [[s.split, str(s.path.resolve())] for s in sources]])
    return hashlib.sha256(text.encode()).hexdigest()


def _new_manifest(fmt: str, sources: list[Source], discard: int, name: str, key: str) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "status": "incomplete",
        "config_hash": None,
        "sources_key": key,
        "spec": {"model": "imported", "name": name, "format": fmt, "importer_version": IMPORTER_VERSION},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_simulations": 0,
        "duration_ms": None,
        "discard_ms": discard,
        "seeds": None,
        "split": {split: [] for split in SPLITS},
        "n_inputs": None,
        "inputs": None,
        "shards": [],
        "files": [{"path": str(s.path), "split": s.split, "identity": None, "simulations": None} for s in sources],
        "wall_s_per_simulated_s": None,
    }


def _import_file(read: Callable, source: Source, i: int, manifest: dict, work: Path, discard: int) -> None:
    """Check the file's simulations whole, then write their shards and record the file."""
    inputs, recordings = read(source.path)
    where = str(source.path)
    described = inputs.as_json()
    if manifest["inputs"] is not None and described != manifest["inputs"]:
        first = next(f["path"] for f in manifest["files"] if f["simulations"] is not None)
        raise BadSource(f"{where}: its {len(inputs)} inputs differ from those of {first} "
                        f"({manifest['n_inputs']} inputs): every file of a dataset must come from the same cell")
    durations = {r.duration_ms for r in recordings}
    if len(durations) > 1 or (manifest["duration_ms"] is not None
                              and durations != {manifest["duration_ms"] + discard}):
        seen = sorted(durations | ({manifest["duration_ms"] + discard} if manifest["duration_ms"] else set()))
        raise BadSource(f"{where}: simulations of {' and '.join(map(str, seen))} ms; every simulation of a dataset "
                        "must have the same length")
    duration = durations.pop()
    if duration <= discard:
        raise BadSource(f"{where}: simulations of {duration} ms leave nothing after discarding {discard} ms")
    first = manifest["n_simulations"]
    entries = []
    for offset, recording in enumerate(recordings):  # shards past the manifest's count: rewritten on resume
        index = first + offset
        arrays = recording.after(discard)
        name = storage.shard_name(index)
        sha = storage.write_shard(work / name, arrays)
        split = source.split or recording.split or split_of(SPLIT_SEED, index, SPLIT_FRACTIONS)
        entries.append((split, {"file": name, "sha256": sha, "n_output_spikes": int(arrays["output_spikes"].size),
                                "n_input_events": int(arrays["input_index"].size)}))
    with storage.signals_held():  # the file is recorded with all its shards, or not at all
        for index, (split, entry) in enumerate(entries, start=first):
            manifest["shards"].append(entry)
            manifest["split"][split].append(index)
        manifest["n_simulations"] = first + len(entries)
        manifest["duration_ms"] = duration - discard
        manifest["n_inputs"], manifest["inputs"] = len(inputs), described
        manifest["files"][i].update(identity=source.identity(), simulations=[first, len(entries)])
        storage.write_manifest(work, manifest)


def _finish(manifest: dict, work: Path, cache_dir: Path) -> Dataset:
    """Name the complete dataset by its content and move it there (or keep the copy that
    is already there: the same data imported before)."""
    content = json.dumps([manifest["spec"], manifest["n_inputs"], manifest["inputs"], manifest["duration_ms"],
                          manifest["split"],
                          [entry["sha256"] for entry in manifest["shards"]]])
    key = "imported-" + hashlib.sha256(content.encode()).hexdigest()[:24]
    manifest.update(config_hash=key, status="complete",
                    completed=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    final = cache_dir / key
    existing = storage.read_manifest(final)
    if existing is not None and existing.get("status") == "complete":
        shutil.rmtree(work)
        return Dataset.open(final)
    storage.write_manifest(work, manifest)
    if final.exists():
        shutil.rmtree(final)  # an incomplete leftover of the same content
    work.rename(final)
    return Dataset.open(final)
