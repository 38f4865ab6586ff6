"""Ground truth for neurosearch: NEURON cell models, their input, and cached datasets.

Public API: ``SimulationSpec`` (the [simulator] config), ``generate`` (simulate or reuse a
dataset), ``generate_part`` / ``Part`` / ``calibrate_drive`` (one dataset simulated in parts
on many machines), ``Dataset`` / ``Simulation`` (read it), ``CellModel`` (what a custom
builder returns) and ``SimulatorError`` (the one user-facing error).
"""

from .cells.base import CellModel
from .dataset import (
    CustomModelSpec,
    Dataset,
    Part,
    PartResult,
    Simulation,
    SimulationSpec,
    StimulusSpec,
    calibrate_drive,
    generate,
    generate_part,
)
from .errors import SimulatorError

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
