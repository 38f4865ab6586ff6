"""neurosearch builder for a small pyramidal-like cell: soma, two basal dendrites, an
apical trunk and a two-branch tuft, read from an SWC file, with the Ih channel of
``mechanisms/ih.mod`` (suffix ``ex_ih``) on every section.

neurosearch calls ``build(morphology)`` once in each worker process, after loading the
compiled ``mechanisms`` folder; ``morphology`` is the config's
``[simulator.custom] morphology`` as an absolute path (or None when unset).
"""

from __future__ import annotations

from pathlib import Path

from neuron import h

from neurosearch.simulators import CellModel

V_REST = -65.0
SEGMENT_UM = 20.0  # at most this long per segment: one input site each


def load_morphology(path: Path) -> None:
    """Create the morphology's sections at hoc's top level (soma[0], dend[k], apic[k])."""
    h.load_file("import3d.hoc")
    reader = h.Import3d_SWC_read() if path.suffix.lower() == ".swc" else h.Import3d_Neurolucida3()
    reader.quiet = 1
    reader.input(str(path))
    h.Import3d_GUI(reader, False).instantiate(None)


def build(morphology: Path | None) -> CellModel:
    if morphology is None:
        raise ValueError("this cell needs [simulator.custom] morphology (the SWC file)")
    load_morphology(morphology)
    soma = h.soma[0]
    dendrites = [sec for sec in h.allsec() if sec != soma]  # dend[0], dend[1], apic[0..2]

    soma.insert("hh")
    soma.insert("ex_ih")
    for sec in dendrites:
        sec.nseg = 1 + 2 * int(sec.L / (2 * SEGMENT_UM))  # odd, so there is a segment at 0.5
        sec.cm = 2.0  # spines
        sec.insert("pas")
        sec.insert("ex_ih")
        for seg in sec:
            seg.pas.g, seg.pas.e = 1 / 10000, V_REST
            # Ih grows with distance from the soma, as in layer-5 pyramidal cells
            seg.ex_ih.gbar = 0.00005 * (1 + h.distance(soma(0.5), seg) / 200)
    for sec in (soma, *dendrites):
        sec.Ra = 100.0

    # one site per dendritic segment; branch id = the section (a branch unit in deep_unit)
    sites = [(seg, branch) for branch, sec in enumerate(dendrites) for seg in sec]
    return CellModel(
        soma=soma,
        sites=sites,
        ampa_weight=0.0015,  # µS, peak conductance per input spike
        nmda_weight=0.001,
        gaba_weight=0.001,
        v_init=V_REST,
        celsius=6.3,  # hh's own temperature
    )
