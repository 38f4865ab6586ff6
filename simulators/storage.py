"""Files of a dataset: shards and the manifest, written atomically and checksummed.

A crash can leave a temporary file behind but never a half-written file under its final
name: everything is written to a temporary name in the same folder, flushed, and renamed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
SHARD_ARRAYS = ("input_index", "input_time", "voltage", "output_spikes")


def shard_name(index: int) -> str:
    """Path of simulation ``index``'s shard, relative to the dataset folder."""
    return f"shards/sim_{index:05d}.npz"


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then deliver the first one.

    A shard and the record that counts it are two files; a signal between the two writes
    would leave a finished simulation on disk that no record names, and a rerun would
    simulate it again. The handlers are swapped rather than the signals masked: a masked
    signal goes to another thread (the worker pool's) and Python still runs its handler in
    the main thread at once. Only the main thread can swap handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    # a handler installed outside Python (None) cannot be put back, so it is left alone
    previous = {signum: handler for signum in (signal.SIGINT, signal.SIGTERM)
                if (handler := signal.getsignal(signum)) is not None}
    for signum in previous:
        signal.signal(signum, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent, the old file, or complete.

    The temporary file is created like any other file (mode 0666 less the umask), not
    0600 as ``mkstemp`` would: other users of a shared dataset folder must read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
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


def write_record(path: Path, record: dict) -> None:
    """A JSON record (the manifest, a part's record), written atomically."""
    write_atomic(path, json.dumps(record, indent=1).encode())


def read_record(path: Path) -> dict | None:
    """The JSON record at ``path``, or None when it is missing or unreadable."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_manifest(folder: Path, manifest: dict) -> None:
    write_record(folder / MANIFEST, manifest)


def read_manifest(folder: Path) -> dict | None:
    """The manifest, or None when it is missing or unreadable."""
    return read_record(folder / MANIFEST)
