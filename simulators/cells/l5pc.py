"""The bundled reduced layer-5 pyramidal cell, built from Python (no morphology file).

Soma and axon initial segment carry Hodgkin–Huxley channels (the AIS at a higher Na
density, so spikes start there); the dendrites are passive, with membrane capacitance
and leak doubled to account for spines. Dendrites: basal branches, an apical trunk with
obliques, and a tuft. Every dendritic segment is one input site; ``l5pc`` puts
AMPA + NMDA there, ``l5pc_ampa`` AMPA only (stronger, so its firing rate stays in range):
the twin whose input→output function should need no dendritic nonlinearity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import CellModel

V_REST = -65.0
RA = 100.0  # ohm cm
CM = 1.0  # uF/cm2
G_LEAK = 1.0 / 20000.0  # S/cm2
SPINE_FACTOR = 2.0  # dendritic cm and leak scaled for spine membrane


@dataclass(frozen=True)
class Branch:
    """One unbranched dendritic section: name, length (um), diameter (um), segments, parent, where."""

    name: str
    length: float
    diam: float
    nseg: int
    parent: str
    at: float


DENDRITES: tuple[Branch, ...] = (
    *(Branch(f"basal_{k}", 200.0, 1.0, 10, "soma", 0.5) for k in range(5)),
    Branch("trunk", 600.0, 2.5, 18, "soma", 1.0),
    Branch("oblique_0", 180.0, 0.8, 8, "trunk", 0.15),
    Branch("oblique_1", 180.0, 0.8, 8, "trunk", 0.35),
    Branch("oblique_2", 180.0, 0.8, 8, "trunk", 0.55),
    *(Branch(f"tuft_{k}", 320.0, 0.9, 12, "trunk", 1.0) for k in range(3)),
)

# Single-event peak conductances (uS). Tuned so both models fire ~5-10 Hz on average
# under the default StimulusSpec; the AMPA-only twin's AMPA is scaled up to make up for
# the missing NMDA charge (with NMDA simply switched off, l5pc falls silent).
WEIGHTS_NMDA = {"ampa_weight": 0.0005, "nmda_weight": 0.0006, "gaba_weight": 0.0012}
WEIGHTS_AMPA_ONLY = {"ampa_weight": 0.0014, "nmda_weight": 0.0, "gaba_weight": 0.0012}


def _build(nmda: bool) -> CellModel:
    from neuron import h

    h.celsius = 6.3  # the temperature Hodgkin–Huxley's rates are written for
    sections: dict[str, object] = {}

    soma = h.Section(name="soma")
    soma.L = soma.diam = 20.0
    soma.insert("hh")
    sections["soma"] = soma

    ais = h.Section(name="ais")
    ais.L, ais.diam, ais.nseg = 30.0, 1.2, 5
    ais.insert("hh")
    for seg in ais:
        seg.hh.gnabar = 0.6
        seg.hh.gkbar = 0.06
    ais.connect(soma(0.0))

    axon = h.Section(name="axon")  # myelinated-like passive load beyond the AIS
    axon.L, axon.diam, axon.nseg = 400.0, 1.0, 3
    axon.insert("pas")
    axon.cm = 0.04
    for seg in axon:
        seg.pas.g = G_LEAK * 0.04
        seg.pas.e = V_REST
    axon.connect(ais(1.0))

    sites: list[tuple[object, int]] = []
    for branch_id, spec in enumerate(DENDRITES):
        sec = h.Section(name=spec.name)
        sec.L, sec.diam, sec.nseg = spec.length, spec.diam, spec.nseg
        sec.insert("pas")
        sec.cm = CM * SPINE_FACTOR
        for seg in sec:
            seg.pas.g = G_LEAK * SPINE_FACTOR
            seg.pas.e = V_REST
        sec.connect(sections[spec.parent](spec.at))
        sections[spec.name] = sec
        sites.extend((seg, branch_id) for seg in sec)

    for sec in (soma, ais, axon, *sections.values()):
        sec.Ra = RA
    soma.cm = CM
    weights = WEIGHTS_NMDA if nmda else WEIGHTS_AMPA_ONLY
    return CellModel(
        soma=soma,
        sites=sites,
        v_init=V_REST,
        dt=0.025,
        celsius=6.3,
        keep=[ais, axon, *sections.values()],
        **weights,
    )


def build_l5pc(morphology: Path | None = None) -> CellModel:
    """Reduced L5 pyramidal cell with AMPA + NMDA inputs on every dendritic segment."""
    return _build(nmda=True)


def build_l5pc_ampa(morphology: Path | None = None) -> CellModel:
    """The same cell with AMPA-only excitation (NMDA off, AMPA rescaled)."""
    return _build(nmda=False)
