"""Ground truth for neurosearch: NEURON cell models, their input, and cached datasets.

Public API: ``SimulationSpec`` (the [simulator] config), ``generate`` (simulate or reuse a
dataset), ``generate_part`` / ``Part`` / ``calibrate_drive`` (one dataset simulated in parts
on many machines), ``Dataset`` / ``Simulation`` (read it), ``CellModel`` (what a custom
builder returns) and ``SimulatorError`` (the one user-facing error).
"""

import importlib
from typing import Any

from .errors import SimulatorError

#: where each public name lives; imported on first use (PEP 562), so that the CLI and
#: ``search.toml``'s validation load only what they need (the spec), not the simulator
_WHERE = {
    "CellModel": ".cells.base",
    "CustomModelSpec": ".spec",
    "SimulationSpec": ".spec",
    "StimulusSpec": ".spec",
    "Part": ".parts",
    "PartResult": ".parts",
    "Dataset": ".dataset",
    "Simulation": ".dataset",
    "calibrate_drive": ".dataset",
    "generate": ".dataset",
    "generate_part": ".dataset",
}

__all__ = [
    "CellModel",
    "CustomModelSpec",
    "Dataset",
    "Part",
    "PartResult",
    "Simulation",
    "SimulationSpec",
    "SimulatorError",
    "StimulusSpec",
    "calibrate_drive",
    "generate",
    "generate_part",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
