"""Cell models: the bundled reduced L5 pyramidal cell (and its AMPA-only twin) and user builders."""

from __future__ import annotations

from pathlib import Path

from .base import Builder, CellModel, SynapseFactory
from .custom import build_custom, load_builder
from .l5pc import build_l5pc, build_l5pc_ampa

BUNDLED: dict[str, Builder] = {"l5pc": build_l5pc, "l5pc_ampa": build_l5pc_ampa}


def build_cell(model: str, builder: str | None = None, morphology: Path | None = None) -> CellModel:
    """Build ``model`` in this process: a bundled name, or ``"custom"`` with its builder."""
    if model == "custom":
        if builder is None:
            raise ValueError("model 'custom' needs a builder")
        return build_custom(builder, morphology)
    return BUNDLED[model](morphology)


__all__ = ["BUNDLED", "Builder", "CellModel", "SynapseFactory", "build_cell", "build_custom", "load_builder"]
