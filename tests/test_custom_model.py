"""A user's own NEURON model: the shipped example end to end, and one clear line for
every builder mistake (real NEURON builders, real nrnivmodl, real calibration probes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neurosearch.simulators import Dataset, SimulationSpec, SimulatorError, generate, nmodl
from neurosearch.simulators.cells import build_custom

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "small_pyramid"
SMALL = [  # the example as shipped, with fewer, shorter simulations and one probe per drive level
    "--set", "simulator.n_simulations=4",
    "--set", "simulator.split=[0.5, 0.25, 0.25]",
    "--set", "simulator.duration_ms=1300",
    "--set", "simulator.discard_ms=300",
    "--set", "simulator.processes=2",
    "--set", "simulator.stimulus.calibration_probes=1",
]


def neurosearch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurosearch.search.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_example_simulates_under_calibrated_drive_and_runs_a_study(tmp_path: Path) -> None:
    example = tmp_path / "small_pyramid"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("work"))
    config = ["--config", str(example / "search.toml")]  # run from elsewhere: its paths resolve against its folder

    sim = neurosearch("simulate", "--no-progress", *config, *SMALL, cwd=tmp_path)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    said = " ".join(sim.stdout.split())  # as one line, however the console wrapped it
    assert "4 simulations × 1000 ms, 134 inputs" in said  # 67 dendritic segments, exc + inh each
    assert "silent 0 of 4" in said and "calibrated drive" in said
    (folder,) = [p for p in (example / "work" / "datasets").iterdir() if p.name != "calibrations"]
    dataset = Dataset.open(folder)
    assert sorted(set(dataset.input_group.tolist())) == [0, 1, 2, 3, 4]  # one branch id per dendritic section
    assert dataset.manifest["custom_model"]["morphology_sha256"]

    tiny = ["--set", "training.epochs=1", "--set", "training.steps_per_epoch=2",
            "--set", "spaces.tcn.depths=[1]", "--set", "spaces.deep_unit.depths=[1]"]
    run = neurosearch("run", "--no-progress", *config, *SMALL, *tiny, "--json", "report.json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted((r["family"], r["depth"]) for r in report["rows"]) == [("deep_unit", 1), ("tcn", 1)]
    assert all(r["best"] is not None for r in report["rows"]), report["rows"]
    datasets = [p for p in (example / "work" / "datasets").iterdir() if p.name != "calibrations"]
    assert datasets == [dataset.path]  # the study used the dataset `simulate` made


# --- builder mistakes: each one line naming the builder ---------------------------------

CELL = """
from neuron import h
from neurosearch.simulators import CellModel

def build(morphology):
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20
    soma.insert("hh")
    dend = h.Section(name="dend")
    dend.L, dend.diam, dend.nseg = 200, 1, 3
    dend.insert("pas")
    dend.connect(soma(1))
{body}
"""

MISTAKES = {
    "no sites": ("    return CellModel(soma=soma, sites=[], keep=[dend])",
                 "returned a CellModel without input sites"),
    "site is a section": ("    return CellModel(soma=soma, sites=[(dend, 0)])",
                          "site 0 is the whole section dend, expected one of its segments"),
    "site without branch id": ("    return CellModel(soma=soma, sites=[dend(0.5)])",
                               "site 0 is dend(0.5) (a Segment), expected a (segment, branch_id) pair"),
    "negative branch id": ("    return CellModel(soma=soma, sites=[(seg, -1) for seg in dend])",
                           "site 0 has branch id -1, expected a non-negative int"),
    "soma None": ("    return CellModel(soma=None, sites=[(seg, 0) for seg in dend])",
                  "CellModel.soma is None, expected the soma's NEURON Section"),
    "soma a segment": ("    return CellModel(soma=soma(0.5), sites=[(seg, 0) for seg in dend])",
                       "CellModel.soma is soma(0.5) (a Segment), expected the soma's NEURON Section"),
    "wrong return type": ("    return soma, [(seg, 0) for seg in dend]",
                          "returned tuple, expected neurosearch.simulators.CellModel"),
    "builder raises": ("    dend.insert('no_such_channel')",
                       "raised ValueError: argument not a density mechanism name"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_builder_mistake_is_one_line_naming_the_builder(mistake: str, tmp_path: Path) -> None:
    body, expected = MISTAKES[mistake]
    builder = tmp_path / "cell.py"
    builder.write_text(CELL.format(body=body))
    with pytest.raises(SimulatorError) as info:
        build_custom(f"{builder}:build", None)
    message = str(info.value)
    assert message.startswith(f"custom model builder {builder}:build")
    assert expected in message and "\n" not in message


def test_builder_mistake_in_the_cli_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "cell.py").write_text(CELL.format(body=MISTAKES["soma None"][0]))
    (tmp_path / "search.toml").write_text(textwrap.dedent("""
        [training]
        window_ms = 100
        burn_in_ms = 20
        [simulator]
        model = "custom"
        n_simulations = 3
        duration_ms = 300
        discard_ms = 100
        processes = 1
        split = [0.34, 0.33, 0.33]
        [simulator.custom]
        builder = "cell.py:build"
        [simulator.stimulus]
        rate_scale = [1.0, 1.0]
        """))
    result = neurosearch("simulate", "--no-progress", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.strip().splitlines() == [
        f"error: custom model builder {tmp_path / 'cell.py'}:build: CellModel.soma is None, expected the soma's "
        "NEURON Section (e.g. h.Section(name='soma')), whose soma(0.5) is recorded"
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "source, expected",
    [
        ("NEURON { SUFFIX ns_bad }\nPARAMETER { g = 0\nBREAKPOINT { g = = 1 }\n",
         'bad.mod line 3: syntax error: name = number ("BREAKPOINT { g = = 1 }")'),
        ("NEURON { SUFFIX ns_bad }\nBREAKPOINT {\nVERBATIM\nthis is not C;\nENDVERBATIM\n}\n",
         "bad.mod (line "),  # a C++ error in the code made from its VERBATIM block
    ],
    ids=["nmodl", "c++"],
)
def test_mod_that_does_not_compile_is_one_line(source: str, expected: str, tmp_path: Path) -> None:
    folder = tmp_path / "mechanisms"
    folder.mkdir()
    (folder / "bad.mod").write_text(source)
    with pytest.raises(SimulatorError) as info:
        nmodl.compile_mechanisms(folder, tmp_path / "cache")
    message = str(info.value)
    assert message.startswith(f"NEURON mechanisms in {folder} failed to compile: {expected}")
    assert "\n" not in message and "Traceback" not in message
    log = Path(message.rsplit("whole output: ", 1)[1].rstrip(")"))
    assert "bad.mod" in log.read_text()  # nrnivmodl's full output is kept for the curious


def calibrated(builder: Path, tmp_path: Path) -> SimulationSpec:
    """A tiny spec whose drive is calibrated (one probe per level): calibration is the point."""
    return SimulationSpec(model="custom", custom={"builder": f"{builder}:build"}, n_simulations=3, duration_ms=300,
                          discard_ms=100, processes=1, split=(0.34, 0.33, 0.33),
                          stimulus={"calibration_probes": 1})


def test_cell_that_fires_without_input_is_caught_before_calibrating(tmp_path: Path) -> None:
    builder = tmp_path / "cell.py"
    leftover_clamp = (
        "    clamp = h.IClamp(soma(0.5))\n"
        "    clamp.dur, clamp.amp = 1e9, 0.5\n"
        "    return CellModel(soma=soma, sites=[(seg, 0) for seg in dend], keep=[dend, clamp])"
    )
    builder.write_text(CELL.format(body=leftover_clamp))
    with pytest.raises(SimulatorError) as info:
        generate(calibrated(builder, tmp_path), tmp_path / "data", progress=False)
    message = str(info.value)
    assert message.startswith(f"custom model builder {builder}:build fires ")
    assert "spikes in 1.5 s without any input" in message and "\n" not in message


def test_cell_that_never_fires_names_what_to_change(tmp_path: Path) -> None:
    builder = tmp_path / "cell.py"
    passive = CELL.replace('soma.insert("hh")', 'soma.insert("pas")')  # no spike-generating channel
    builder.write_text(passive.format(body="    return CellModel(soma=soma, sites=[(seg, 0) for seg in dend], keep=[dend])"))
    with pytest.raises(SimulatorError) as info:
        generate(calibrated(builder, tmp_path), tmp_path / "data", progress=False)
    message = str(info.value)
    assert message.startswith(f"custom model builder {builder}:build fires at most 0.00 Hz even at 64× the nominal")
    assert "ampa_weight" in message and "spike_threshold" in message and "\n" not in message


def test_synapse_factory_places_the_users_synapses(tmp_path: Path) -> None:
    """The README's Exp2Syn factory: every site's input drives the user's point processes."""
    import numpy as np

    from neurosearch.simulators.engine import CellRunner

    builder = tmp_path / "cell.py"
    factory = (
        "    def synapses(seg, kind):\n"
        "        syn = h.Exp2Syn(seg)\n"
        "        syn.tau1, syn.tau2, syn.e = (0.2, 2.0, 0.0) if kind == 'exc' else (0.5, 8.0, -80.0)\n"
        "        return [(syn, 0.01 if kind == 'exc' else 0.002)]    # µS\n"
        "    return CellModel(soma=soma, sites=[(seg, 0) for seg in dend], synapse_factory=synapses, keep=[dend])"
    )
    builder.write_text(CELL.format(body=factory))
    runner = CellRunner(build_custom(f"{builder}:build", None))
    assert {syn.hname().split("[")[0] for syn in runner.synapses} == {"Exp2Syn"}
    assert runner.n_inputs == 6 and runner.inputs.kind.tolist() == [0, 0, 0, 1, 1, 1]
    quiet = runner.run(np.zeros(0, dtype=np.int64), np.zeros(0), 100).voltage
    excited = runner.run(np.array([0, 1, 2] * 5), np.repeat(np.arange(10.0, 60.0, 10.0), 3), 100).voltage
    assert excited.max() > quiet.max() + 5  # the excitatory inputs depolarise the soma
