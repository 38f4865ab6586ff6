"""One dataset simulated in parts (`neurosearch simulate --part K/N`, a SLURM array's tasks):
real NEURON in real separate processes, merged, and compared with a one-process run.

Every compiled mechanism goes to one temporary cache for this module (NEUROSEARCH_CACHE,
inherited by the part processes), compiled once before any part starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neurosearch.search.config import load_config
from neurosearch.simulators import (
    Dataset,
    Part,
    SimulationSpec,
    SimulatorError,
    calibrate,
    generate,
    generate_part,
    nmodl,
    storage,
)

SBATCH = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "simulate.sbatch"
VOLATILE = {"created", "completed", "wall_s_per_simulated_s"}  # timestamps and timings; everything else must agree


@pytest.fixture(scope="module", autouse=True)
def mech_cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ns_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROSEARCH_CACHE", str(root))
        nmodl.compile_mechanisms(nmodl.BUNDLED_MECHANISMS)
        yield root


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, tiny_toml) -> dict:
    """The tiny study's dataset (6 × 0.5 s) as parts 1/2 and 2/2, run at once as two
    processes by examples/slurm/simulate.sbatch, the way a SLURM array's tasks run it."""
    root = tmp_path_factory.mktemp("parts")
    (root / "search.toml").write_text(tiny_toml("parts").replace("duration_ms = 1300", "duration_ms = 800"))
    shim = root / "bin" / "neurosearch"  # this interpreter's neurosearch, however it is installed
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m neurosearch.search.cli "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}", "CONFIG": str(root / "search.toml"),
           "WORK_DIR": str(root / "shared"), "SLURM_CPUS_PER_TASK": "1"}
    procs = [subprocess.Popen(["bash", str(SBATCH), "part", "2"], cwd=root, env={**env, "SLURM_ARRAY_TASK_ID": str(k)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (1, 2)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    spec = load_config(root / "search.toml", ["simulator.processes=1"]).simulator
    return {"spec": spec, "outputs": outputs, "folder": root / "shared" / "datasets" / spec.config_hash()}


@pytest.fixture(scope="module")
def reference(parts: dict, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The same spec simulated by one plain `generate`."""
    return generate(parts["spec"], tmp_path_factory.mktemp("one"), progress=False)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """A private copy of a dataset folder, at the path `generate` looks for it under ``tmp_path``."""
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def comparable(manifest: dict) -> dict:
    shards = [{k: v for k, v in entry.items() if k != "wall_s"} for entry in manifest["shards"]]
    return {**{k: v for k, v in manifest.items() if k not in VOLATILE}, "shards": shards}


def test_two_parts_merge_into_the_one_process_dataset(parts: dict, reference: Dataset, tmp_path: Path) -> None:
    assert "part 1/2: simulated 3, 0 already done" in parts["outputs"][0]
    assert "part 2/2: simulated 3, 0 already done" in parts["outputs"][1]
    records = {k: storage.read_record(Part(k, 2).record_file(parts["folder"])) for k in (1, 2)}
    assert [i for i, e in enumerate(records[1]["shards"]) if e] == [0, 2, 4]
    assert [i for i, e in enumerate(records[2]["shards"]) if e] == [1, 3, 5]
    folder = copy_of(parts["folder"], tmp_path)
    with pytest.raises(SimulatorError, match="no readable dataset manifest"):
        Dataset.open(folder)  # parts never write the manifest

    merged = generate(parts["spec"], tmp_path, progress=False)
    assert merged.path == folder
    assert merged.generated == [] and merged.merged == list(range(6))  # merged, not simulated again
    assert comparable(merged.manifest) == comparable(reference.manifest)
    for mine, theirs in zip(merged.manifest["shards"], reference.manifest["shards"]):
        assert storage.file_sha256(folder / mine["file"]) == theirs["sha256"]
    Dataset.open(folder)  # complete, every checksum verified
    after = generate_part(parts["spec"], tmp_path, Part(2, 2), progress=False)
    assert after.generated == [] and after.summary().endswith("the dataset is complete")


def test_a_rerun_part_skips_what_is_done_and_redoes_what_was_lost(parts: dict, reference: Dataset,
                                                                  tmp_path: Path) -> None:
    folder = copy_of(parts["folder"], tmp_path)
    record_file = Part(1, 2).record_file(folder)
    files = [*sorted((folder / "shards").iterdir()), record_file]
    stamps = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files]

    again = generate_part(parts["spec"], tmp_path, Part(1, 2), progress=False)
    assert again.generated == [] and again.missing == []
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files] == stamps  # nothing rewritten

    (folder / storage.shard_name(2)).unlink()
    resumed = generate_part(parts["spec"], tmp_path, Part(1, 2), progress=False)
    assert resumed.generated == [2]
    assert storage.file_sha256(folder / storage.shard_name(2)) == reference.manifest["shards"][2]["sha256"]


def test_a_partly_done_dataset_simulates_only_the_rest(parts: dict, reference: Dataset, tmp_path: Path) -> None:
    folder = copy_of(parts["folder"], tmp_path)
    Part(2, 2).record_file(folder).unlink()  # as if part 2 never ran
    for i in (1, 3, 5):
        (folder / storage.shard_name(i)).unlink()
    status = generate_part(parts["spec"], tmp_path, Part(1, 2), progress=False)
    assert status.missing == [1, 3, 5] and status.missing_parts == [2]
    assert "misses 3 simulation(s), in part(s) 2 of 2" in status.summary()

    done = generate(parts["spec"], tmp_path, progress=False)
    assert done.generated == [1, 3, 5] and done.merged == [0, 2, 4]
    assert comparable(done.manifest) == comparable(reference.manifest)


def test_parts_simulated_with_another_drive_are_not_merged(tmp_path: Path) -> None:
    # a calibrated drive, taken from a calibration cache seeded here (no probes run)
    spec = SimulationSpec(model="l5pc", n_simulations=3, duration_ms=700, discard_ms=200, seed=1, processes=1,
                          split=(0.34, 0.33, 0.33))
    cache_file, _ = calibrate.cached_calibration(tmp_path, spec)
    calibrate.save_calibration(cache_file, {"rate_scale": [1.2, 2.2]})
    first = generate_part(spec, tmp_path, Part(1, 3), progress=False)
    assert first.generated == [0]
    assert storage.read_record(Part(1, 3).record_file(first.folder))["calibration"]["rate_scale"] == [1.2, 2.2]

    calibrate.save_calibration(cache_file, {"rate_scale": [1.5, 2.5]})  # e.g. measured again on other nodes
    second = generate_part(spec, tmp_path, Part(2, 3), progress=False)
    assert second.generated == [1] and second.missing == [0, 2]  # part 1's shard is other data
    done = generate(spec, tmp_path, progress=False)
    assert done.generated == [0, 2] and done.merged == [1]
    assert done.manifest["calibration"]["rate_scale"] == [1.5, 2.5]


@pytest.mark.parametrize("text", ["3/2", "0/0", "0/2", "1/0", "abc", "1/2/3", "-1/2", ""])
def test_bad_part_values_are_refused(text: str) -> None:
    with pytest.raises(SimulatorError, match="--part"):
        Part.parse(text)


def test_a_bad_part_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "neurosearch.search.cli", "simulate", "--part", "3/2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # no search.toml needed
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2
    assert out.strip().splitlines() == [out.strip()] and out.startswith("error: --part 3/2")
