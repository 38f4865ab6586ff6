"""Folders a command will write, checked by writing: light, so that commands which only
need a folder (``import``) do not import what the preflight opens (torch, MLflow)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import UserError


def writable_folder(folder: Path, what: str) -> Path:
    """``folder``, created if missing, after writing a file in it: the only test that holds
    for root, read-only mounts and full disks alike (``os.access`` trusts the mode bits)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{what} {folder} is not writable: {exc.strerror or exc}") from None
    return folder
