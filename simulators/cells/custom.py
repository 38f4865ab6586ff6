"""Load a user's cell builder from ``"path/to/file.py:function"``.

Every way this can go wrong (missing file, import error, missing function, a builder
that raises or returns something other than a CellModel) becomes a ``SimulatorError``
that names the builder, because the user sees it as a one-line message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from ..errors import SimulatorError
from .base import Builder, CellModel


def load_builder(builder: str) -> Builder:
    """Import the file and return the named function."""
    file_part, _, func_name = builder.rpartition(":")
    path = Path(file_part).expanduser().resolve()
    if not path.is_file():
        raise SimulatorError(f"custom model builder file {path} does not exist")
    module_name = "neurosearch_user_cell_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if module_name in sys.modules:
        module = sys.modules[module_name]
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise SimulatorError(f"custom model builder {path} cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: any failure is theirs to fix
            del sys.modules[module_name]
            raise SimulatorError(f"importing custom model builder {path} failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SimulatorError(f"custom model builder {path} has no function {func_name!r}")
    return func


def build_custom(builder: str, morphology: Path | None) -> CellModel:
    """Call the user's builder and check that it returned a usable CellModel."""
    func = load_builder(builder)
    try:
        cell = func(morphology)
    except SimulatorError:
        raise
    except Exception as exc:
        raise SimulatorError(f"custom model builder {builder} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(cell, CellModel):
        raise SimulatorError(
            f"custom model builder {builder} returned {type(cell).__name__}, expected "
            "neurosearch.simulators.CellModel"
        )
    if not cell.sites:
        raise SimulatorError(f"custom model builder {builder} returned a CellModel without input sites")
    return cell
