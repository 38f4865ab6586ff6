"""Ground truth for neurosearch: NEURON cell models, their input, and cached datasets.

Public API: ``SimulationSpec`` (the [simulator] config), ``generate`` (simulate or reuse a
dataset), ``Dataset`` / ``Simulation`` (read it), ``CellModel`` (what a custom builder
returns) and ``SimulatorError`` (the one user-facing error).
"""

from .cells.base import CellModel
from .dataset import CustomModelSpec, Dataset, Simulation, SimulationSpec, StimulusSpec, generate
from .errors import SimulatorError

__all__ = [
    "CellModel",
    "CustomModelSpec",
    "Dataset",
    "Simulation",
    "SimulationSpec",
    "SimulatorError",
    "StimulusSpec",
    "generate",
]
