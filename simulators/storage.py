"""Files of a dataset: shards and the manifest, written atomically and checksummed.

A crash can leave a temporary file behind but never a half-written file under its final
name: everything is written to a temporary name in the same folder, flushed, and renamed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
SHARD_ARRAYS = ("input_index", "input_time", "voltage", "output_spikes")


def shard_name(index: int) -> str:
    """Path of simulation ``index``'s shard, relative to the dataset folder."""
    return f"shards/sim_{index:05d}.npz"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent, the old file, or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write names no file: say which
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # (OSError picks the same subclass)
        raise


def write_shard(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write one simulation's arrays as an uncompressed .npz; return its sha256."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: arrays[name] for name in SHARD_ARRAYS})
    data = buffer.getvalue()
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in SHARD_ARRAYS}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, manifest: dict) -> None:
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1).encode())


def read_manifest(folder: Path) -> dict | None:
    """The manifest, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None
