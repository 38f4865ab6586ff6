"""[simulator] integrator: validated, part of the dataset hash, and each method gives the
fixed-step answer (real NEURON; every generate() runs in its own spawned worker, so the
CVode and the fixed-step synapse libraries never meet in one process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from neurosearch.simulators import SimulationSpec, SimulatorError, generate, nmodl

SMALL = dict(model="l5pc", n_simulations=4, duration_ms=700, discard_ms=100, seed=2, processes=1,
             split=(0.5, 0.25, 0.25), stimulus={"rate_scale": [1.5, 1.5]})


def test_integrator_is_validated() -> None:
    with pytest.raises(ValidationError, match="'fixed', 'cvode' or 'coreneuron'"):
        SimulationSpec(integrator="euler")
    with pytest.raises(ValidationError, match="cvode_atol"):
        SimulationSpec(integrator="cvode", cvode_atol=0)


def test_integrator_is_part_of_the_dataset_hash() -> None:
    fixed = SimulationSpec()
    assert fixed.config_hash() == SimulationSpec(cvode_atol=1e-5).config_hash()  # unused by fixed step
    cvode = SimulationSpec(integrator="cvode")
    assert len({fixed.config_hash(), cvode.config_hash(), SimulationSpec(integrator="coreneuron").config_hash()}) == 3
    assert cvode.config_hash() != SimulationSpec(integrator="cvode", cvode_atol=1e-5).config_hash()


def test_cvode_refuses_fixed_step_only_synapses_in_one_line() -> None:
    """The fixed-step ns_ synapses cannot run under CVode: the user gets one clear line."""
    from neurosearch.simulators.cells import build_cell
    from neurosearch.simulators.engine import CellRunner

    nmodl.load_mechanisms(nmodl.BUNDLED_MECHANISMS)
    runner = CellRunner(build_cell("l5pc"), "cvode")
    with pytest.raises(SimulatorError, match='integrator = "cvode": NEURON refuses this cell: .*ns_AMPA cannot be used'):
        runner.run(np.array([0]), np.array([5.0]), 20)


@pytest.fixture(scope="module")
def fixed_step(tmp_path_factory: pytest.TempPathFactory):
    return generate(SimulationSpec(**SMALL), tmp_path_factory.mktemp("fixed"), progress=False)


def _coreneuron_or_skip() -> None:
    try:
        nmodl.compile_mechanisms(nmodl.BUNDLED_MECHANISMS, coreneuron=True)
    except SimulatorError as exc:
        pytest.skip(f"CoreNEURON mechanisms do not build here: {exc}")


@pytest.mark.parametrize("integrator", ["cvode", "coreneuron"])
def test_integrator_matches_fixed_step(integrator: str, fixed_step, tmp_path: Path) -> None:
    if integrator == "coreneuron":
        _coreneuron_or_skip()
    other = generate(SimulationSpec(**SMALL, integrator=integrator), tmp_path, progress=False)
    assert other.path != fixed_step.path
    n_ref = n_got = n_matched = 0
    for i in range(len(fixed_step)):
        ref, got = fixed_step.load(i), other.load(i)
        n_ref, n_got = n_ref + ref.output_spikes.size, n_got + got.output_spikes.size
        # a spike within a 1 ms bin of a fixed-step spike is the same spike; a marginal one may flip
        n_matched += sum(bool(np.any(np.abs(ref.output_spikes - t) <= 1)) for t in got.output_spikes)
        if integrator == "coreneuron":  # the same fixed step in another engine: the same numbers
            np.testing.assert_array_equal(got.output_spikes, ref.output_spikes)
            np.testing.assert_allclose(got.voltage, ref.voltage, atol=1e-3)
    assert n_ref >= 10  # the comparison saw spikes
    assert n_matched >= 0.8 * max(n_ref, n_got)


def test_coreneuron_sources_merge_into_one_folder(tmp_path: Path) -> None:
    """CoreNEURON loads one mechanism library: a custom cell's channels join the bundled synapses."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "chan.mod").write_text("NEURON { SUFFIX ns_test_chan }\n")
    merged = nmodl.merged_sources([nmodl.BUNDLED_MECHANISMS, own], tmp_path / "cache")
    assert sorted(p.name for p in merged.iterdir()) == ["ampa.mod", "chan.mod", "gabaa.mod", "nmda.mod"]
    assert nmodl.merged_sources([nmodl.BUNDLED_MECHANISMS, own], tmp_path / "cache") == merged  # cached
    (own / "ampa.mod").write_text("NEURON { POINT_PROCESS ns_AMPA }\n")  # a different file of the same name
    with pytest.raises(SimulatorError, match="ampa.mod is in both"):
        nmodl.merged_sources([nmodl.BUNDLED_MECHANISMS, own], tmp_path / "cache")
