"""neurosearch builder for a cell whose synapses are its own: the small_pyramid
morphology (soma, two basal dendrites, an apical trunk and a two-branch tuft, read from
``../small_pyramid/morphology.swc``), an ``hh`` soma and passive dendrites, and on every
dendritic segment the example's own NMODL synapses instead of neurosearch's bundled ones:

- ``os_AmpaNmda`` (``mechanisms/ampa_nmda.mod``) for the excitatory input: AMPA and
  NMDA behind one release site, the NMDA part Mg2+-blocked (Jahr & Stevens), its peak
  ``nmda_ratio`` × the AMPA peak;
- ``os_GabaA`` (``mechanisms/gaba_a.mod``) for the inhibitory input, reversing at -80 mV.

They go in through ``CellModel.synapse_factory``: neurosearch calls
``synapses(segment, kind)`` once per site and input kind (``"exc"`` / ``"inh"``) and
feeds that input's spike train to every ``(point_process, weight)`` returned. With a
factory, CellModel's ``ampa_weight`` / ``nmda_weight`` / ``gaba_weight`` are unused
and the bundled ``ns_`` synapses are placed nowhere; the weights below are the ones
that count.

neurosearch calls ``build(morphology)`` once in each worker process, after loading the
compiled ``mechanisms`` folder; ``morphology`` is the config's
``[simulator.custom] morphology`` as an absolute path. The weights need only be in a
sensible range: the input drive is calibrated for the cell (searched from 1/64 to 64 ×
the nominal rates) so that it fires at the default mean of 1 Hz.
"""

from __future__ import annotations

from pathlib import Path

from neuron import h

from neurosearch.simulators import CellModel

V_REST = -65.0
SEGMENT_UM = 20.0  # at most this long per segment: one input site each

EXC_WEIGHT = 0.0005  # µS, peak AMPA conductance per input spike (NMDA: nmda_ratio × this)
NMDA_RATIO = 0.5
INH_WEIGHT = 0.001  # µS, peak GABA_A conductance per input spike
SOMA_GNABAR = 0.25  # S/cm², hh's sodium in the soma (hh's default: 0.12)


def load_morphology(path: Path) -> None:
    """Create the morphology's sections at hoc's top level (soma[0], dend[k], apic[k])."""
    h.load_file("import3d.hoc")
    reader = h.Import3d_SWC_read() if path.suffix.lower() == ".swc" else h.Import3d_Neurolucida3()
    reader.quiet = 1
    reader.input(str(path))
    h.Import3d_GUI(reader, False).instantiate(None)


def synapses(seg, kind: str) -> list[tuple[object, float]]:
    """The synapse_factory: one of this example's own point processes on ``seg``."""
    if kind == "exc":
        syn = h.os_AmpaNmda(seg)
        syn.nmda_ratio = NMDA_RATIO
        return [(syn, EXC_WEIGHT)]
    syn = h.os_GabaA(seg)
    return [(syn, INH_WEIGHT)]


def build(morphology: Path | None) -> CellModel:
    if morphology is None:
        raise ValueError("this cell needs [simulator.custom] morphology (the SWC file)")
    load_morphology(morphology)
    soma = h.soma[0]
    dendrites = [sec for sec in h.allsec() if sec != soma]  # dend[0], dend[1], apic[0..2]

    soma.insert("hh")
    # With hh's default sodium, this 20 µm soma under the dendrites' load fires spikes that
    # peak below 0 mV and fail once the NMDA drive holds it near -55 mV (sodium
    # inactivated); twice the density gives full spikes at every drive.
    soma.gnabar_hh = SOMA_GNABAR
    for sec in dendrites:
        sec.nseg = 1 + 2 * int(sec.L / (2 * SEGMENT_UM))  # odd, so there is a segment at 0.5
        sec.cm = 2.0  # spines
        sec.insert("pas")
        for seg in sec:
            seg.pas.g, seg.pas.e = 1 / 10000, V_REST
    for sec in (soma, *dendrites):
        sec.Ra = 100.0

    # one site per dendritic segment; branch id = the section (a branch unit in deep_unit)
    sites = [(seg, branch) for branch, sec in enumerate(dendrites) for seg in sec]
    return CellModel(
        soma=soma,
        sites=sites,
        synapse_factory=synapses,
        v_init=V_REST,
        celsius=6.3,  # hh's own temperature
    )
