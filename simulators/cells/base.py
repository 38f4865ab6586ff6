"""The contract between a cell builder and the simulator.

A builder (bundled or the user's own) is a function ``build(morphology) -> CellModel``
that creates NEURON sections in the calling process. The simulator then puts one
excitatory input (ns_AMPA, plus ns_NMDA when ``nmda_weight > 0``) and one inhibitory
input (ns_GABAA) on every site, records the somatic voltage and detects output spikes.
Builders that need other synapse types supply ``synapse_factory``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

SynapseKind = Literal["exc", "inh"]
SynapseFactory = Callable[[Any, SynapseKind], list[tuple[Any, float]]]
"""(segment, kind) -> [(point process, NetCon weight), ...]; all share that input's spike train."""

Builder = Callable[[Path | None], "CellModel"]


@dataclass
class CellModel:
    """A built cell: where to record, where inputs go, and how strong they are.

    ``soma``: the section whose ``soma(0.5)`` voltage is the output, and where spikes are
    detected (``spike_threshold`` crossed, then a repolarisation below ``spike_reset``).
    ``sites``: ``(segment, branch_id)`` pairs; each site gets one excitatory and one inhibitory
    input. ``branch_id`` groups sites by dendritic branch (any non-negative int).
    Weights are single-event peak conductances in µS for the standard ns_ synapses.
    ``keep``: every other NEURON object the cell needs alive (sections created from
    Python vanish when their last reference goes, e.g. an axon no site points at).
    """

    soma: Any
    sites: list[tuple[Any, int]]
    ampa_weight: float = 0.0008
    nmda_weight: float = 0.0
    gaba_weight: float = 0.001
    spike_threshold: float = -20.0
    spike_reset: float = -40.0
    """An output spike is an upward crossing of ``spike_threshold`` (its time: a local maximum
    above the threshold follows) after which the voltage repolarises below ``spike_reset``
    before the next crossing. A soma held depolarised (depolarisation block), oscillating
    around the threshold without repolarising, fires none. The bundled cells' spikes peak
    from -20 to +10 mV and repolarise to about -63 mV."""
    v_init: float = -65.0
    dt: float = 0.025
    celsius: float | None = None
    synapse_factory: SynapseFactory | None = None
    keep: list[Any] = field(default_factory=list)
