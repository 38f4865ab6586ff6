"""Ground-truth simulators: real NEURON, tiny datasets (a few simulations of < 1 s).

Every compiled mechanism goes to one temporary cache for this module (NEUROSEARCH_CACHE),
so the suite never depends on, or writes to, the user's cache; the bundled synapses are
compiled once for the whole module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from neurosearch.simulators import CellModel, Dataset, SimulationSpec, SimulatorError, generate, nmodl
from neurosearch.simulators.cells import build_custom
from neurosearch.simulators.spec import StimulusSpec

# A drive range given outright (no calibration probes) keeps these tests short;
# test_calibration.py covers the calibrated default.
TINY = dict(model="l5pc", n_simulations=3, duration_ms=900, discard_ms=200, seed=1, split=(0.34, 0.33, 0.33),
            stimulus={"rate_scale": (1.2, 2.2)})
LONGER = dict(TINY, n_simulations=12)


@pytest.fixture(scope="module", autouse=True)
def mech_cache(tmp_path_factory: pytest.TempPathFactory):
    """A private compile cache for the module, with the bundled synapses compiled into it."""
    root = tmp_path_factory.mktemp("ns_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROSEARCH_CACHE", str(root))
        before = nmodl.compile_count
        build = nmodl.compile_mechanisms(nmodl.BUNDLED_MECHANISMS)
        yield {"root": root, "bundled": build, "compiles": nmodl.compile_count - before}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The TINY dataset generated with two worker processes."""
    return generate(SimulationSpec(**TINY, processes=2), tmp_path_factory.mktemp("ref"), progress=False)


def same_data(a: Dataset, b: Dataset) -> bool:
    for i in range(len(a)):
        x, y = a.load(i), b.load(i)
        for name in ("input_index", "input_time", "voltage", "output_spikes"):
            if not np.array_equal(getattr(x, name), getattr(y, name)):
                return False
    return True


# --- mechanisms -----------------------------------------------------------------------


def test_bundled_mechanisms_compile_once_and_are_cached(mech_cache) -> None:
    build = mech_cache["bundled"]
    assert mech_cache["compiles"] == 1
    assert (build / os.uname().machine / "libnrnmech.so").is_file()
    library = build / os.uname().machine / "libnrnmech.so"
    mtime = library.stat().st_mtime_ns
    count = nmodl.compile_count
    assert nmodl.compile_mechanisms(nmodl.BUNDLED_MECHANISMS) == build  # cache hit
    assert nmodl.compile_count == count
    assert library.stat().st_mtime_ns == mtime
    nmodl.load_mechanisms(nmodl.BUNDLED_MECHANISMS)
    nmodl.load_mechanisms(nmodl.BUNDLED_MECHANISMS)  # idempotent within a process
    from neuron import h

    assert hasattr(h, "ns_AMPA") and hasattr(h, "ns_NMDA") and hasattr(h, "ns_GABAA")


def test_concurrent_first_compiles_build_once(tmp_path: Path) -> None:
    code = (
        "import sys; from neurosearch.simulators import nmodl; "
        "nmodl.compile_mechanisms(nmodl.BUNDLED_MECHANISMS, __import__('pathlib').Path(sys.argv[1])); "
        "print(nmodl.compile_count)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    counts = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert sorted(counts) == [0, 1]  # one built it, the other waited and reused it
    builds = [p for p in (tmp_path / "mechanisms").iterdir() if p.is_dir()]
    assert len(builds) == 1 and not builds[0].name.startswith(".build")


def test_broken_mod_raises_with_nrnivmodl_first_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "bad.mod").write_text("NEURON { SUFFIX ns_test_bad }\nPARAMETER { g = 0\nBREAKPOINT { g = = 1 }\n")
    with pytest.raises(SimulatorError) as info:
        nmodl.compile_mechanisms(folder, tmp_path / "cache")
    message = str(info.value)
    assert str(folder) in message and "failed to compile" in message
    assert "bad.mod line 3: syntax error" in message  # nrnivmodl's own diagnosis, in one line
    assert "Traceback" not in message and "\n" not in message
    assert not list((tmp_path / "cache" / "mechanisms").glob(".build-*"))  # no leftovers


# --- the bundled cells ----------------------------------------------------------------


def run_in_process(model: str, seed: int, duration_ms: int = 1500, nmda_off: bool = False) -> dict:
    """Build ``model`` here, run one default stimulus through it, and let the cell go."""
    from neurosearch.simulators.cells import build_cell
    from neurosearch.simulators.engine import CellRunner
    from neurosearch.simulators.stimulus import spike_trains

    nmodl.load_mechanisms(nmodl.BUNDLED_MECHANISMS)
    runner = CellRunner(build_cell(model))
    if nmda_off:
        for ncs in runner.netcons:
            for nc in ncs:
                if nc.syn().hname().startswith("ns_NMDA"):
                    nc.weight[0] = 0.0
    index, ms = spike_trains(
        np.random.default_rng(seed), StimulusSpec(rate_scale=(1.2, 2.2)), runner.inputs.kind, runner.inputs.group, duration_ms
    )
    result = runner.run(index, ms, duration_ms)
    return {
        "n_inputs": runner.n_inputs,
        "synapses": {syn.hname().split("[")[0] for syn in runner.synapses},
        "voltage": result.voltage,
        "spikes": len(result.spike_times),
    }


def test_cells_spike_and_nmda_matters() -> None:
    seed = 5  # a stimulus with firing in both models (many seeds give a few spikes per second)
    with_nmda = run_in_process("l5pc", seed)
    ampa_only = run_in_process("l5pc_ampa", seed)
    nmda_off = run_in_process("l5pc", seed, nmda_off=True)

    assert 100 <= with_nmda["n_inputs"] // 2 <= 160 and with_nmda["n_inputs"] == ampa_only["n_inputs"]
    assert with_nmda["spikes"] > 0 and ampa_only["spikes"] > 0
    assert with_nmda["synapses"] == {"ns_AMPA", "ns_NMDA", "ns_GABAA"}
    assert ampa_only["synapses"] == {"ns_AMPA", "ns_GABAA"}
    # same input, different cells: the traces differ; and taking NMDA out of l5pc
    # (keeping its AMPA) loses most of its output: the dendritic nonlinearity carries it.
    rms = np.sqrt(np.mean((with_nmda["voltage"] - ampa_only["voltage"]) ** 2))
    assert rms > 1.0
    assert nmda_off["spikes"] < 0.5 * with_nmda["spikes"]
    assert np.mean(nmda_off["voltage"]) < np.mean(with_nmda["voltage"]) - 1.0


# --- datasets -------------------------------------------------------------------------


def test_dataset_contents(reference: Dataset) -> None:
    ds = Dataset.open(reference.path)
    T = TINY["duration_ms"] - TINY["discard_ms"]
    assert len(ds) == 3 and ds.duration_ms == T and ds.config_hash == reference.path.name
    assert ds.n_inputs == len(ds.input_kind) == len(ds.input_group) == len(ds.input_section)
    assert set(ds.input_kind.tolist()) == {0, 1}
    assert sorted(ds.indices("train") + ds.indices("valid") + ds.indices("test")) == [0, 1, 2]
    assert ds.manifest["neuron_version"] and ds.manifest["wall_s_per_simulated_s"] > 0
    assert len(ds.manifest["seeds"]) == 3
    total_spikes = 0
    for i in range(len(ds)):
        sim = ds.load(i)
        assert sim.voltage.dtype == np.float32 and sim.voltage.shape == (T,)
        assert sim.input_index.dtype == np.int32 and sim.input_time.dtype == np.int32
        assert sim.input_time.min() >= 0 and sim.input_time.max() < T
        assert sim.input_index.max() < ds.n_inputs
        dense = sim.dense_input()
        assert dense.shape == (ds.n_inputs, T) and dense.sum() == sim.input_index.size
        assert np.all((sim.output_spikes >= 0) & (sim.output_spikes < T))
        total_spikes += sim.output_spikes.size
    assert total_spikes > 0
    with pytest.raises(ValueError, match="train"):
        ds.indices("training")


def test_same_config_same_data_any_process_count_and_cache_hit(reference: Dataset, tmp_path: Path) -> None:
    again = generate(SimulationSpec(**TINY, processes=1), tmp_path, progress=False)
    assert again.generated == [0, 1, 2]
    assert again.config_hash == reference.config_hash
    assert [s["sha256"] for s in again.manifest["shards"]] == [s["sha256"] for s in reference.manifest["shards"]]
    assert same_data(again, reference)

    files = sorted(again.path.rglob("*.npz")) + [again.path / "manifest.json"]
    stamps = [f.stat().st_mtime_ns for f in files]
    hit = generate(SimulationSpec(**TINY, processes=2), tmp_path, progress=False)
    assert hit.generated == []  # nothing simulated
    assert [f.stat().st_mtime_ns for f in files] == stamps  # nothing rewritten


def test_resume_after_killed_generation(reference: Dataset, tmp_path: Path) -> None:
    # enough simulations that the kill, right after the first shard lands, is part-way
    script = tmp_path / "gen.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from neurosearch.simulators import SimulationSpec, generate
            if __name__ == "__main__":
                generate(SimulationSpec(**{LONGER!r}, processes=1), Path({str(tmp_path / "cache")!r}), progress=False)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    manifest_path = tmp_path / "cache" / SimulationSpec(**LONGER).config_hash() / "manifest.json"
    done: list[int] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                shards = json.loads(manifest_path.read_text())["shards"]
                done = [i for i, s in enumerate(shards) if s is not None]
            except (OSError, ValueError, KeyError, TypeError):
                done = []
            if done:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the generator and its workers, mid-run
        proc.wait()
    done = [i for i, s in enumerate(json.loads(manifest_path.read_text())["shards"]) if s is not None]
    assert 1 <= len(done) < LONGER["n_simulations"], "the generation should have been killed part-way"
    with pytest.raises(SimulatorError, match="incomplete"):
        Dataset.open(manifest_path.parent)

    resumed = generate(SimulationSpec(**LONGER), tmp_path / "cache", progress=False)
    assert resumed.generated == [i for i in range(LONGER["n_simulations"]) if i not in done]
    assert same_data(reference, resumed)  # simulation i depends only on (seed, i)
    Dataset.open(resumed.path)


def test_corrupt_and_missing_shards_are_regenerated(reference: Dataset, tmp_path: Path) -> None:
    folder = tmp_path / reference.path.name
    shutil.copytree(reference.path, folder)
    shard1 = folder / reference.manifest["shards"][1]["file"]
    data = bytearray(shard1.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard1.write_bytes(bytes(data))
    (folder / reference.manifest["shards"][2]["file"]).unlink()
    with pytest.raises(SimulatorError, match="corrupt"):
        Dataset.open(folder)

    fixed = generate(SimulationSpec(**TINY), tmp_path, progress=False)
    assert fixed.path == folder and fixed.generated == [1, 2]
    assert same_data(fixed, reference)
    Dataset.open(folder)


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"model": "l6pc"}, "model"),
        ({"n_simulations": 2}, "n_simulations"),
        ({"split": (0.5, 0.6, -0.1)}, "split"),
        ({"seed": -1}, "seed"),
        ({"stimulus": {"exc_rate_hz": -3}}, "exc_rate_hz"),
        ({"stimulus": {"rate_scale": (2.0, 1.0)}}, "rate_scale"),
        ({"n_simulation": 5}, "n_simulation"),
        ({"model": "custom"}, "custom"),
        ({"custom": {"builder": "cell.py"}}, "builder"),
        ({"duration_ms": 500, "discard_ms": 500}, "discard_ms"),
    ],
)
def test_bad_spec_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        SimulationSpec(**values)
    assert field in str(info.value)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ValidationError, match="l5pc, l5pc_ampa, custom"):
        SimulationSpec(model="hay2011")


def test_config_hash_covers_data_not_processes() -> None:
    base = SimulationSpec()
    assert base.config_hash() == SimulationSpec(processes=7).config_hash()
    assert base.config_hash() != SimulationSpec(seed=1).config_hash()
    assert base.config_hash() != SimulationSpec(model="l5pc_ampa").config_hash()
    assert base.config_hash() != SimulationSpec(stimulus={"exc_rate_hz": 11}).config_hash()


# --- custom models --------------------------------------------------------------------

def test_custom_model_end_to_end(custom_files: dict[str, Path], tmp_path: Path) -> None:
    spec = SimulationSpec(
        model="custom",
        custom={
            "builder": f"{custom_files['builder']}:build",
            "mechanisms": custom_files["mechanisms"],
            "morphology": custom_files["morphology"],
        },
        n_simulations=3,
        duration_ms=500,
        discard_ms=100,
        processes=1,
        split=(0.34, 0.33, 0.33),
        stimulus={"rate_scale": (1.0, 2.0)},  # given: this test is about the builder, not the calibration
    )
    ds = generate(spec, tmp_path / "data", progress=False)
    assert ds.generated == [0, 1, 2]
    assert ds.n_inputs == 12
    assert ds.input_kind.tolist() == [0] * 6 + [1] * 6
    assert ds.input_group.tolist() == [0, 0, 0, 1, 1, 1] * 2
    assert ds.input_section[:3] == ["dend_0"] * 3
    assert ds.input_distance_um.max() == pytest.approx(10 + 250 * 5 / 6, abs=1e-3)  # (stored to 1 µm/1000) the morphology reached the builder
    sim = ds.load(0)
    assert np.isfinite(sim.voltage).all() and sim.voltage.std() > 0.1
    assert ds.manifest["custom_model"]["mechanisms_sha256"]
    # the mechanism folder is part of the data's identity
    leak = custom_files["mechanisms"] / "leak.mod"
    leak.write_text(leak.read_text().replace("0.0001", "0.0002"))
    assert spec.config_hash() != ds.config_hash


def test_custom_builder_errors(custom_files: dict[str, Path], tmp_path: Path) -> None:
    missing = SimulationSpec(model="custom", custom={"builder": f"{tmp_path / 'nope.py'}:build"})
    with pytest.raises(SimulatorError, match="does not exist"):
        generate(missing, tmp_path / "data", progress=False)

    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(SimulatorError, match="importing custom model builder .*ModuleNotFoundError"):
        build_custom(f"{broken}:build", None)
    with pytest.raises(SimulatorError, match="no function 'missing'"):
        build_custom(f"{custom_files['builder']}:missing", None)

    wrong = SimulationSpec(
        model="custom",
        custom={"builder": f"{custom_files['builder']}:not_a_cell"},
        n_simulations=3,
        duration_ms=300,
        discard_ms=100,
        processes=1,
        split=(0.34, 0.33, 0.33),
    )
    with pytest.raises(SimulatorError, match="returned int, expected .*CellModel"):  # raised in a worker
        generate(wrong, tmp_path / "data", progress=False)
    assert CellModel  # the public contract builders import
