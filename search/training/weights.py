"""The torch files a study keeps (checkpoints, trained models) in a folder that other
users and machines share: written atomically, read as weights and plain values only,
never as code.

``torch.load(weights_only=False)`` unpickles arbitrary objects, so a file planted in a
shared ``work_dir`` could run code in every worker that resumes from it. What neurosearch
writes (tensors, numbers, strings, lists and dicts) loads with ``weights_only=True``;
anything else is refused with one line.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.simulators.storage import write_atomic

from ..errors import UserError

if TYPE_CHECKING:
    import torch


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` through ``write_atomic``: ``path`` is the old file or the whole new one,
    and a failed write (a full disk) leaves no temporary file behind."""
    import torch  # here, not at import: reading a study's storage needs no torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def load_weights(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """The saved record at ``path``; a ``UserError`` when it holds anything but weights and
    plain values (or is not a torch file at all)."""
    import torch

    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as exc:
        found = re.search(r"Unsupported (global: GLOBAL \S+|operand \d+)", str(exc))
        why = found.group(0) if found else type(exc).__name__
        raise UserError(
            f"refusing to load {path}: it holds more than weights and plain values ({why}), "
            "so loading it could run code; delete it if neurosearch did not write it"
        ) from None
    if not isinstance(saved, dict):
        raise UserError(f"refusing to load {path}: it holds a {type(saved).__name__}, not a neurosearch record")
    return saved
