"""A detailed layer-5 pyramidal cell for ``bench_simulate.py --methods``: a reconstructed
morphology with Hay-style active channels (the L5PC example of BluePyOpt: its
mechanisms, morphology C060114A7.asc and released parameter values). The files are not
shipped; point ``[simulator.custom]`` at a copy of them:

    [simulator]
    model = "custom"
    [simulator.custom]
    builder = "bench/detailed_cell.py:build"
    mechanisms = "<copy>/mechanisms"              # examples/l5pc/mechanisms
    morphology = "<copy>/C060114A7.asc"           # examples/l5pc/morphology

Every basal and apical segment is an input site (AMPA + NMDA, GABA_A); the axon is
replaced by a 60 µm stub (two 30 µm sections), as in the published model.
"""

from __future__ import annotations

import math
from pathlib import Path

from neurosearch.simulators import CellModel

MECHANISMS = {
    "somatic": ("NaTs2_t", "SKv3_1", "SK_E2", "CaDynamics_E2", "Ca_HVA", "Ca_LVAst", "Ih"),
    "axonal": ("Ca_LVAst", "Ca_HVA", "CaDynamics_E2", "SKv3_1", "SK_E2", "K_Tst", "K_Pst", "Nap_Et2", "NaTa_t"),
    "basal": ("Ih",),
    "apical": ("Ih", "Im", "SKv3_1", "NaTs2_t"),
}
RANGE = {  # (section list, NEURON range name) -> value; Ih on apical grows with distance (below)
    ("basal", "gIhbar_Ih"): 8e-05, ("somatic", "gIhbar_Ih"): 8e-05,
    ("apical", "gNaTs2_tbar_NaTs2_t"): 0.026145, ("apical", "gSKv3_1bar_SKv3_1"): 0.004226,
    ("apical", "gImbar_Im"): 0.000143,
    ("axonal", "gNaTa_tbar_NaTa_t"): 3.137968, ("axonal", "gK_Tstbar_K_Tst"): 0.089259,
    ("axonal", "gamma_CaDynamics_E2"): 0.002910, ("axonal", "gNap_Et2bar_Nap_Et2"): 0.006827,
    ("axonal", "gSK_E2bar_SK_E2"): 0.007104, ("axonal", "gCa_HVAbar_Ca_HVA"): 0.000990,
    ("axonal", "gK_Pstbar_K_Pst"): 0.973538, ("axonal", "gSKv3_1bar_SKv3_1"): 1.021945,
    ("axonal", "decay_CaDynamics_E2"): 287.198731, ("axonal", "gCa_LVAstbar_Ca_LVAst"): 0.008752,
    ("somatic", "gamma_CaDynamics_E2"): 0.000609, ("somatic", "gSKv3_1bar_SKv3_1"): 0.303472,
    ("somatic", "gSK_E2bar_SK_E2"): 0.008407, ("somatic", "gCa_HVAbar_Ca_HVA"): 0.000994,
    ("somatic", "gNaTs2_tbar_NaTs2_t"): 0.983955, ("somatic", "decay_CaDynamics_E2"): 210.485284,
    ("somatic", "gCa_LVAstbar_Ca_LVAst"): 0.000333,
}
APICAL_IH = 8e-05  # times (-0.8696 + 2.087 exp(0.0031 distance/µm))


def _load(morphology: Path, h) -> dict[str, list]:
    h.load_file("stdlib.hoc")
    h.load_file("import3d.hoc")
    reader = h.Import3d_Neurolucida3()
    reader.quiet = 1
    reader.input(str(morphology))
    h.Import3d_GUI(reader, 0).instantiate(None)
    lists: dict[str, list] = {"somatic": [], "axonal": [], "basal": [], "apical": []}
    prefix = {"soma": "somatic", "axon": "axonal", "dend": "basal", "apic": "apical"}
    for sec in h.allsec():
        kind = prefix.get(sec.name().split("[")[0])
        if kind:
            lists[kind].append(sec)
    return lists


def _replace_axon(lists: dict[str, list], h) -> None:
    """Two 30 µm sections with the reconstructed axon's start diameter, as in the published model."""
    diam = lists["axonal"][0](0.5).diam if lists["axonal"] else 1.0
    for sec in lists["axonal"]:
        h.delete_section(sec=sec)
    soma = lists["somatic"][0]
    stub = [h.Section(name=f"axon_stub_{k}") for k in range(2)]
    for sec in stub:
        sec.L, sec.diam, sec.nseg = 30.0, diam, 1
    stub[0].connect(soma(0.5))
    stub[1].connect(stub[0](1.0))
    lists["axonal"] = stub


def build(morphology: Path | None) -> CellModel:
    from neuron import h

    if morphology is None:
        raise ValueError("the detailed cell needs its morphology (C060114A7.asc)")
    lists = _load(Path(morphology), h)
    _replace_axon(lists, h)
    every = [sec for secs in lists.values() for sec in secs]
    for sec in every:
        sec.nseg = 1 + 2 * int(sec.L / 40.0)
        sec.insert("pas")
        sec.Ra, sec.cm = 100.0, 1.0
        for seg in sec:
            seg.pas.g, seg.pas.e = 3e-05, -75.0
    for kind, mechs in MECHANISMS.items():
        for sec in lists[kind]:
            for mech in mechs:
                sec.insert(mech)
            if kind in ("basal", "apical"):
                sec.cm = 2.0
            if kind != "basal":
                sec.ena, sec.ek = 50.0, -85.0
    for (kind, name), value in RANGE.items():
        for sec in lists[kind]:
            for seg in sec:
                setattr(seg, name, value)
    soma = lists["somatic"][0]
    for sec in lists["apical"]:
        for seg in sec:
            seg.gIhbar_Ih = APICAL_IH * (-0.8696 + 2.087 * math.exp(0.0031 * h.distance(soma(0.5), seg)))
    sites = [(seg, b) for b, sec in enumerate(lists["basal"] + lists["apical"]) for seg in sec]
    return CellModel(soma=soma, sites=sites, v_init=-65.0, dt=0.025, celsius=34.0, ampa_weight=0.0005,
                     nmda_weight=0.0006, gaba_weight=0.0012, keep=every)
