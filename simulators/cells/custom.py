"""Load a user's cell builder from ``"path/to/file.py:function"``.

Every way this can go wrong (missing file, import error, missing function, a builder
that raises, returns something other than a CellModel, or a CellModel whose soma or
sites are not NEURON sections and segments) becomes a ``SimulatorError`` that names the
builder, because the user sees it as a one-line message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

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
            raise SimulatorError(
                f"importing custom model builder {path} failed: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
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
        raise SimulatorError(f"custom model builder {builder} raised {type(exc).__name__}: {_one_line(exc)}") from None
    check_cell(cell, f"custom model builder {builder}")
    return cell


def check_cell(cell: object, who: str) -> None:
    """Raise one ``SimulatorError`` line, starting with ``who``, for the first thing that
    makes ``cell`` unusable; the simulator would otherwise fail later with a traceback."""
    from neuron import nrn

    if not isinstance(cell, CellModel):
        raise SimulatorError(f"{who} returned {type(cell).__name__}, expected neurosearch.simulators.CellModel")
    if not isinstance(cell.soma, nrn.Section):
        raise SimulatorError(
            f"{who}: CellModel.soma is {_describe(cell.soma)}, expected the soma's NEURON Section "
            "(e.g. h.Section(name='soma')), whose soma(0.5) is recorded"
        )
    if not isinstance(cell.sites, (list, tuple)):
        raise SimulatorError(f"{who}: CellModel.sites is {_describe(cell.sites)}, expected a list of (segment, branch_id)")
    if not cell.sites:
        raise SimulatorError(
            f"{who} returned a CellModel without input sites: give sites = [(segment, branch_id), ...], "
            "e.g. [(seg, 0) for seg in dend]"
        )
    for k, site in enumerate(cell.sites):
        if not isinstance(site, tuple) or len(site) != 2:
            raise SimulatorError(f"{who}: site {k} is {_describe(site)}, expected a (segment, branch_id) pair")
        seg, branch = site
        if isinstance(seg, nrn.Section):
            raise SimulatorError(
                f"{who}: site {k} is the whole section {seg.name()}, expected one of its segments: "
                f"[(seg, branch_id) for seg in {seg.name()}] puts one site on each"
            )
        if not isinstance(seg, nrn.Segment):
            raise SimulatorError(f"{who}: site {k} holds {_describe(seg)} where a segment (sec(x)) belongs")
        if isinstance(branch, bool) or not isinstance(branch, (int, np.integer)) or branch < 0:
            raise SimulatorError(f"{who}: site {k} has branch id {branch!r}, expected a non-negative int")


def _describe(value: object) -> str:
    """What the user put there, in a few words."""
    if value is None:
        return "None"
    text = repr(value)
    return f"a {type(value).__name__}" if len(text) > 40 else f"{text} (a {type(value).__name__})"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
