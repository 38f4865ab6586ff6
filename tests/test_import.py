"""`neurosearch import`: ground truth a user already holds becomes a dataset a study trains on.

On the real layout: tests/fixtures/neuronio/ holds two files written by Beniaguev et al.'s
own generator (its README says how they were made; stored xz-compressed, unpacked here
to what NeuronIO ships). The exchange format round-trips a simulated dataset, and a tiny
study runs end to end on the imported copy. Bad files end in one line, with nothing
half-written."""

from __future__ import annotations

import lzma
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurosearch.simulators import Dataset
from neurosearch.simulators.importing import BadSource, find_sources, import_dataset, write_simulation

FIXTURES = Path(__file__).parent / "fixtures" / "neuronio"
#: what the paper's own loader (parse_sim_experiment_file in fit_CNN.py) makes of the two
#: fixture files, simulation by simulation: input spikes (rows of X set to 1) and the
#: bins of y_spike that are 1
PAPER_INPUT_SPIKES = [40287, 43204, 36284, 39018]
PAPER_SPIKE_BINS = [[1398, 1407], [878, 922, 1737, 2033, 2069, 2091, 2129, 2141, 2533, 2541], [], [2597]]


def neurosearch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurosearch.search.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    text = " ".join(result.stdout.split())
    assert text.startswith("error: "), result.stdout
    return text


@pytest.fixture(scope="module")
def neuronio_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("neuronio")
    files = []
    for packed in sorted(FIXTURES.glob("*.p.xz")):
        files.append(folder / packed.name[: -len(".xz")])
        files[-1].write_bytes(lzma.decompress(packed.read_bytes()))
    assert len(files) == 2
    return files


def _plain_load(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


# --------------------------------------------------------------------------- NeuronIO


def test_neuronio_files_import_as_the_papers_loader_reads_them(neuronio_files: list[Path], tmp_path: Path) -> None:
    result = neurosearch("import", "neuronio", str(neuronio_files[0].parent), "--discard-ms", "0", "--name", "nio",
                         "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = next((tmp_path / "work" / "datasets").glob("imported-*"))
    assert folder.name in result.stdout
    dataset = Dataset.open(folder)
    assert (len(dataset), dataset.duration_ms, dataset.n_inputs) == (4, 3000, 1278)
    assert dataset.cell() == "imported:nio"
    assert [dataset.load(i).input_index.size for i in range(4)] == PAPER_INPUT_SPIKES
    assert [dataset.load(i).output_spikes.tolist() for i in range(4)] == PAPER_SPIKE_BINS
    # excitatory synapses of the 639 segments first, then the inhibitory ones; branches = sections
    assert dataset.input_kind.tolist() == [0] * 639 + [1] * 639
    raw = _plain_load(neuronio_files[0])
    sim = raw["Results"]["listOfSingleSimulationDicts"][0]
    np.testing.assert_array_equal(dataset.load(0).voltage, sim["somaVoltageLowRes"].astype(np.float32))
    first = dataset.load(0)
    segment = next(iter(sim["exInputSpikeTimes"]))
    assert sorted(first.input_time[first.input_index == segment].tolist()) == sorted(
        int(t) for t in sim["exInputSpikeTimes"][segment])
    assert dataset.input_group[:639].tolist() == [int(s) for s in raw["Params"]["allSegments_SectionInd"]]
    assert sorted(sum(dataset.manifest["split"].values(), [])) == [0, 1, 2, 3]


def test_the_default_discard_is_the_anchors_500_ms(neuronio_files: list[Path], tmp_path: Path) -> None:
    dataset = import_dataset("neuronio", find_sources("neuronio", {None: neuronio_files}), tmp_path, name="nio",
                             progress=False)
    assert dataset.duration_ms == 2500
    assert dataset.load(1).output_spikes.tolist() == [b - 500 for b in PAPER_SPIKE_BINS[1] if b >= 500]
    assert int(dataset.load(0).input_time.max()) < 2500


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote: str as byte strings (SHORT_BINSTRING/BINSTRING),
    numpy's rebuilders under numpy.core, byte data as str."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str(self, obj: str) -> None:
        data = obj.encode("latin1")
        self.write((pickle.SHORT_BINSTRING + bytes([len(data)]) if len(data) < 256
                    else pickle.BINSTRING + len(data).to_bytes(4, "little")) + data)
        self.memoize(obj)

    def save_bytes(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", None) or ""
        name = name or obj.__qualname__
        if module.startswith("numpy._core"):
            module = module.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[str] = save_str
    dispatch[bytes] = save_bytes


def test_a_python_2_pickle_reads_the_same(neuronio_files: list[Path], tmp_path: Path) -> None:
    source = neuronio_files[1]
    old = tmp_path / "py2" / source.name
    old.parent.mkdir()
    with open(old, "wb") as handle:
        _Python2Pickler(handle, protocol=2).dump(_plain_load(source))
    assert b"numpy.core.multiarray\n_reconstruct" in old.read_bytes() and pickle.BINUNICODE not in old.read_bytes()[:200]
    new = import_dataset("neuronio", find_sources("neuronio", {None: [source]}), tmp_path / "a", name="x", progress=False)
    two = import_dataset("neuronio", find_sources("neuronio", {None: [old]}), tmp_path / "b", name="x", progress=False)
    assert new.path.name == two.path.name  # the same content, so the same key
    assert [e["sha256"] for e in new.manifest["shards"]] == [e["sha256"] for e in two.manifest["shards"]]


def test_dendritic_voltages_are_never_built(neuronio_files: list[Path], tmp_path: Path) -> None:
    from neurosearch.simulators.importing import neuronio

    data = _plain_load(neuronio_files[1])
    for sim in data["Results"]["listOfSingleSimulationDicts"]:
        sim["dendriticVoltagesLowRes"] = np.ones((639, 3000), dtype=np.float16)
    with_dvt = tmp_path / "dvt.p"
    with open(with_dvt, "wb") as handle:
        pickle.dump(data, handle, protocol=2)
    loaded = neuronio.load(with_dvt)
    sims = neuronio._plain(loaded["Results"]["listOfSingleSimulationDicts"])
    assert all(sim["dendriticVoltagesLowRes"] is None for sim in sims)
    assert sims[0]["somaVoltageLowRes"].shape == (3000,)


# --------------------------------------------------------------------------- bad files


def _rewritten(neuronio_files: list[Path], tmp_path: Path, change) -> Path:
    data = _plain_load(neuronio_files[1])
    change(data)
    bad = tmp_path / "bad" / "bad.p"
    bad.parent.mkdir(exist_ok=True)
    with open(bad, "wb") as handle:
        pickle.dump(data, handle, protocol=2)
    return bad


def _sims(data: dict) -> list[dict]:
    return data["Results"]["listOfSingleSimulationDicts"]


class _Evil:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


BAD_NEURONIO = {
    "a text file": (lambda files, tmp: _text(tmp), "not a pickle"),
    "a truncated file": (lambda files, tmp: _truncated(files[0], tmp), "truncated"),
    "a missing key": (lambda files, tmp: _rewritten(files, tmp, lambda d: _sims(d)[1].pop("somaVoltageLowRes")),
                      "simulation 1 has no 'somaVoltageLowRes'"),
    "another cell": (lambda files, tmp: _rewritten(files, tmp, lambda d: d["Params"]["allSegmentsType"].__setitem__(
        0, "apical")), "differ from those of"),
    "a spike after the end": (lambda files, tmp: _rewritten(files, tmp, lambda d: _sims(d)[0]["exInputSpikeTimes"][3]
                                                            .append(3005)), "at 3005 ms lies outside"),
    "a foreign object": (lambda files, tmp: _rewritten(files, tmp, lambda d: d["Params"].update(x=_Evil())),
                         "refused to load"),
}


def _text(tmp: Path) -> Path:
    (tmp / "bad").mkdir(exist_ok=True)
    (tmp / "bad" / "notes.p").write_text("these are my notes\n")
    return tmp / "bad" / "notes.p"


def _truncated(source: Path, tmp: Path) -> Path:
    (tmp / "bad").mkdir(exist_ok=True)
    cut = tmp / "bad" / "cut.p"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return cut


@pytest.mark.parametrize("case", list(BAD_NEURONIO))
def test_a_bad_neuronio_file_is_one_line_and_no_dataset(neuronio_files: list[Path], tmp_path: Path, case: str) -> None:
    make, expected = BAD_NEURONIO[case]
    bad = make(neuronio_files, tmp_path)
    line = one_line(neurosearch("import", "neuronio", str(neuronio_files[0]), str(bad), "--name", "nio",
                                "--no-progress", cwd=tmp_path))
    assert str(bad) in line and expected in line, line
    assert "1 file(s) imported before it are kept" in line
    assert not list((tmp_path / "work" / "datasets").glob("imported-*"))  # no dataset, complete or not


@pytest.mark.parametrize("case, content, expected", [
    ("not an npz", b"hello", "not a complete .npz file"),
    ("truncated", None, "not a complete .npz file"),
    ("a missing key", "missing", "no 'voltage_mv'"),
    ("a spike after the end", "late", "lies outside the simulation"),
])
def test_a_bad_exchange_file_is_one_line(tmp_path: Path, case: str, content, expected: str) -> None:
    good = _exchange(tmp_path / "sims" / "a.npz", seed=1)
    bad = tmp_path / "sims" / "b.npz"
    if content == "missing":
        np.savez(bad, format=np.array("neurosearch-exchange/1"), n_inputs=np.array(4), input_events=np.zeros((0, 2)),
                 output_spike_ms=np.zeros(0))
    elif content == "late":
        _exchange(bad, seed=2, late=True)
    else:
        bad.write_bytes(content if content is not None else good.read_bytes()[:300])
    line = one_line(neurosearch("import", "exchange", str(tmp_path / "sims"), "--no-progress", cwd=tmp_path))
    assert str(bad) in line and expected in line, line


def test_mistakes_on_the_command_line_are_one_line(tmp_path: Path) -> None:
    _exchange(tmp_path / "a.npz", seed=1)
    assert "give both --valid and --test" in one_line(neurosearch("import", "exchange", "a.npz", "--test", "a.npz",
                                                                  cwd=tmp_path))
    assert "does not exist" in one_line(neurosearch("import", "exchange", "nope", cwd=tmp_path))
    assert "unknown format 'hdf5'" in one_line(neurosearch("import", "hdf5", "a.npz", cwd=tmp_path))
    assert "given twice" in one_line(neurosearch("import", "exchange", "a.npz", "--valid", "a.npz", "--test", ".",
                                                 cwd=tmp_path))


# --------------------------------------------------------------------------- resuming


def _exchange(path: Path, seed: int, late: bool = False, n_inputs: int = 4, ms: int = 400,
              split: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    times = rng.uniform(0, ms, 60)
    if late:
        times[0] = ms + 5.0
    events = np.column_stack([rng.integers(0, n_inputs, 60), times])
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_simulation(path, n_inputs=n_inputs, input_events=events, voltage_mv=rng.normal(-70, 3, ms),
                            output_spike_ms=np.sort(rng.uniform(0, ms, 3)), input_group=np.arange(n_inputs) // 2,
                            split=split)


def test_an_interrupted_import_resumes_without_reading_finished_files_again(tmp_path: Path) -> None:
    sims = tmp_path / "sims"
    for i in range(3):
        _exchange(sims / f"s{i}.npz", seed=i)
    _exchange(sims / "s3.npz", seed=3, late=True)
    for i in range(4, 6):
        _exchange(sims / f"s{i}.npz", seed=i)
    stopped = neurosearch("import", "exchange", str(sims), "--no-progress", cwd=tmp_path)
    assert "the 3 file(s) imported before it are kept" in one_line(stopped)
    work = next((tmp_path / "work" / "datasets").glob(".import-*[!k]"))
    before = {p.name: p.stat().st_mtime_ns for p in (work / "shards").glob("*.npz")}
    assert len(before) == 3
    _exchange(sims / "s3.npz", seed=3)  # the bad file fixed
    resumed = neurosearch("import", "exchange", str(sims), "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    dataset = Dataset.open(next((tmp_path / "work" / "datasets").glob("imported-*")))
    assert len(dataset) == 6
    assert {n: (dataset.path / "shards" / n).stat().st_mtime_ns for n in before} == before  # not written again
    fresh = import_dataset("exchange", find_sources("exchange", {None: [sims]}), tmp_path / "fresh", name="sims",
                           progress=False)
    assert fresh.path.name == dataset.path.name  # the same dataset as one import without a stop


def test_given_splits_are_kept(tmp_path: Path) -> None:
    for split, seeds in (("train", range(4)), ("valid", range(4, 6)), ("test", range(6, 8))):
        for seed in seeds:
            _exchange(tmp_path / split / f"s{seed}.npz", seed=seed)
    dataset = import_dataset("exchange", find_sources("exchange", {"train": [tmp_path / "train"],
                                                                   "valid": [tmp_path / "valid"],
                                                                   "test": [tmp_path / "test"]}),
                             tmp_path / "cache", name="given", progress=False)
    assert dataset.manifest["split"] == {"train": [0, 1, 2, 3], "valid": [4, 5], "test": [6, 7]}
    assert dataset.input_group.tolist() == [0, 0, 1, 1]


def test_files_of_another_length_are_refused(tmp_path: Path) -> None:
    _exchange(tmp_path / "s" / "a.npz", seed=1)
    _exchange(tmp_path / "s" / "b.npz", seed=2, ms=500)
    with pytest.raises(BadSource, match="same length"):
        import_dataset("exchange", find_sources("exchange", {None: [tmp_path / "s"]}), tmp_path, name="s",
                       progress=False)


# --------------------------------------------------------------------------- round trip and a study


@pytest.mark.slow
def test_simulate_export_import_is_the_same_dataset_and_a_study_runs_on_it(tmp_path: Path, tiny_toml) -> None:
    (tmp_path / "search.toml").write_text(tiny_toml("on-imported", epochs=1, steps_per_epoch=2))
    made = neurosearch("simulate", "--no-progress", "--exchange", "out", cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    simulated = Dataset.open(next(p for p in (tmp_path / "state" / "datasets").iterdir()
                                  if p.is_dir() and not p.name.startswith((".", "imported-"))
                                  and (p / "manifest.json").is_file()))
    imported = neurosearch("import", "exchange", "out", "--name", "tiny-copy", "--no-progress", cwd=tmp_path)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    copy = Dataset.open(next((tmp_path / "state" / "datasets").glob("imported-*")))
    assert (len(copy), copy.duration_ms, copy.n_inputs) == (len(simulated), simulated.duration_ms, simulated.n_inputs)
    assert copy.manifest["split"] == simulated.manifest["split"]
    assert copy.input_kind.tolist() == simulated.input_kind.tolist()
    assert copy.input_group.tolist() == simulated.input_group.tolist()
    for i in range(len(copy)):
        a, b = simulated.load(i), copy.load(i)
        assert sorted(zip(a.input_index.tolist(), a.input_time.tolist())) == sorted(
            zip(b.input_index.tolist(), b.input_time.tolist()))
        np.testing.assert_array_equal(a.voltage, b.voltage)
        np.testing.assert_array_equal(a.output_spikes, b.output_spikes)
    ran = neurosearch("run", "--no-progress", "--set", f'data.dataset="{copy.path}"', cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"dataset {copy.path.name[:12]}" in ran.stdout
    report = neurosearch("report", "--json", cwd=tmp_path)
    assert report.returncode == 0 and '"tcn"' in report.stdout, report.stdout + report.stderr


def test_the_resident_size_is_what_a_split_takes_and_too_much_is_refused(tmp_path: Path) -> None:
    import torch

    from neurosearch.search.errors import UserError
    from neurosearch.search.training.data import SplitTensors, home_for, resident_bytes, too_big

    for i in range(6):
        _exchange(tmp_path / "s" / f"{i}.npz", seed=i, split="train")
    dataset = import_dataset("exchange", find_sources("exchange", {None: [tmp_path / "s"]}), tmp_path, name="s",
                             progress=False)
    split = SplitTensors(dataset, "train", torch.device("cpu"))
    held = sum(t.numel() * t.element_size() for t in (split.keys, split.inputs, split.spikes, split.voltage))
    assert resident_bytes(dataset, dataset.indices("train")) == held
    assert too_big(held, held, "train", "abc", torch.device("cpu")) is None
    cuda, cpu, what = torch.device("cuda:0"), torch.device("cpu"), ("train", "abc")
    assert home_for(held, cuda, held, None, what) == cuda  # fits on the GPU
    assert home_for(held, cuda, held - 1, held, what) == cpu  # past the GPU: host memory, batches copied over
    with pytest.raises(UserError, match="needs .* GiB resident on cpu .* fewer simulations"):
        home_for(held, cuda, held - 1, held - 1, what)  # past both
    with pytest.raises(UserError, match="resident on cpu"):
        home_for(held, cpu, held - 1, None, what)
