"""A user's own NEURON model: the shipped example end to end, and one clear line for
every builder mistake (real NEURON builders, real nrnivmodl, real calibration probes)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neurosearch.simulators import Dataset, SimulationSpec, SimulatorError, calibrate_drive, generate, nmodl
from neurosearch.simulators.cells import build_custom
from neurosearch.simulators.spec import StimulusSpec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "small_pyramid"
SMALL = [  # the example as shipped, with fewer, shorter simulations and one probe per drive level
    "--set", "simulator.n_simulations=7",  # two simulations in valid and in test: enough spikes to score
    "--set", "simulator.split=[0.5, 0.25, 0.25]",
    "--set", "simulator.duration_ms=1300",
    "--set", "simulator.discard_ms=300",
    "--set", "simulator.processes=2",
    "--set", "simulator.stimulus.calibration_probes=1",
    "--set", "simulator.stimulus.calibration_check=8",
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
    lines = sim.stdout.splitlines()  # redirected to a file or pipe, each message stays one line (grep finds it)
    assert any(line.startswith("dataset ") and line.endswith("7 simulations × 1000 ms, 134 inputs") for line in lines)
    summary = next(line for line in lines if line.startswith("output rate per simulation: mean "))
    assert "(target 13 Hz)" in summary and "calibrated drive" in summary
    assert int(re.search(r"silent (\d+) of 7", summary)[1]) <= 1  # 1 s each, at the high-rate setting
    assert any(line.startswith("calibration (output rate at drive × nominal") for line in lines)
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
    assert message.startswith(f"custom model builder {builder}:build never fires, from 0.25× to 64× the nominal")
    assert "ampa_weight" in message and "spike_threshold (-20 mV)" in message and "\n" not in message
    assert "synapse_factory" not in message  # this cell uses CellModel's weights
    # the measured curve is kept, not only printed
    kept = Path(message.rsplit("(kept in ", 1)[1].rstrip(")"))
    record = json.loads(kept.read_text())
    assert record["failed"] and record["levels"][-1] == 64.0 and max(record["mean_rate_hz"]) == 0


SHUNTED = CELL.format(body="""\
    def synapses(seg, kind):  # inhibition on the soma, strong enough to clamp it at high drive
        syn = h.Exp2Syn(soma(0.5) if kind == "inh" else seg)
        syn.tau1, syn.tau2, syn.e = (0.2, 2.0, 0.0) if kind == "exc" else (0.5, 8.0, -80.0)
        return [(syn, 0.004 if kind == "exc" else 0.03)]
    return CellModel(soma=soma, sites=[(seg, 0) for seg in dend], synapse_factory=synapses, keep=[dend])""")


def test_cell_whose_rate_falls_with_drive_is_told_the_knob_that_applies(tmp_path: Path) -> None:
    """Issue 21's first fault: more drive, more inhibition, fewer spikes. The message names
    the shape and the stimulus' inhibition (the knob that mends it), not CellModel's
    weights, which a synapse_factory makes unused; with that knob turned it calibrates."""
    builder = tmp_path / "cell.py"
    builder.write_text(SHUNTED)
    spec = calibrated(builder, tmp_path).model_copy(
        update={"stimulus": StimulusSpec(calibration_probes=1, calibration_check=4, output_rate_hz=(20.0, 40.0),
                                         mean_rate_hz=28.0)})
    with pytest.raises(SimulatorError) as info:
        generate(spec, tmp_path / "data", progress=False)
    message = str(info.value)
    assert message.startswith(f"custom model builder {builder}:build fires at most ")
    assert "its rate falls as the drive rises" in message
    assert "inh_rate_hz below exc_rate_hz (now 10 and 10 Hz)" in message
    assert "the weights your synapse_factory returns" in message and "ampa_weight" not in message
    assert "measured output rate at drive × nominal input rates: 0.25× " in message and "\n" not in message
    weaker = spec.model_copy(update={"stimulus": spec.stimulus.model_copy(update={"inh_rate_hz": 2.0})})
    assert calibrate_drive(weaker, tmp_path / "data", progress=False)["rate_scale"][0] > 0


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


def test_dataset_identity_covers_what_the_builder_loads(tmp_path: Path) -> None:
    """Issue 21: an edit to the hoc template a builder loads beside it silently reused the
    old simulations. The builder's folder is hashed (its model sources), outputs are not."""
    model = tmp_path / "cell"
    (model / "templates").mkdir(parents=True)
    (model / "cell.py").write_text(CELL.format(body="    return CellModel(soma=soma, sites=[(seg, 0) for seg in dend])"))
    (model / "templates" / "cell.hoc").write_text("begintemplate Cell\nendtemplate Cell\n")
    elsewhere = tmp_path / "params.json"
    elsewhere.write_text('{"gbar": 1}')

    def key(**custom) -> str:
        return SimulationSpec(model="custom", custom={"builder": f"{model / 'cell.py'}:build", **custom},
                              stimulus={"rate_scale": (1, 1)}).config_hash()

    before = key()
    (model / "search.toml").write_text("[study]\n")  # settings and a study's outputs are not the model
    (model / "work" / "datasets").mkdir(parents=True)
    (model / "work" / "datasets" / "cell.py").write_text("# a copy in the outputs")
    assert key() == before
    (model / "templates" / "cell.hoc").write_text("begintemplate Cell\n// gnabar 0.2\nendtemplate Cell\n")
    assert key() != before  # the template the builder loads
    # a file outside the builder's folder counts once it is declared
    declared = key(files=[str(elsewhere)])
    elsewhere.write_text('{"gbar": 2}')
    assert key(files=[str(elsewhere)]) != declared
    with pytest.raises(SimulatorError, match="custom model file .*missing.json .simulator.custom.files. does not exist"):
        key(files=[str(tmp_path / "missing.json")])


BLOCKED = CELL.format(body="""\
    def synapses(seg, kind):  # slow excitation on the soma: strong drive holds it depolarised
        syn = h.Exp2Syn(soma(0.5))
        syn.tau1, syn.tau2, syn.e = (0.2, 50.0, 0.0) if kind == "exc" else (0.5, 8.0, -80.0)
        return [(syn, 0.03 if kind == "exc" else 0.0)]
    return CellModel(soma=soma, sites=[(seg, 0) for seg in dend], synapse_factory=synapses, spike_reset={reset},
                     keep=[dend])""")


def test_a_depolarised_soma_crossing_the_threshold_is_not_firing(tmp_path: Path) -> None:
    """Issue 21: a soma held depolarised oscillates across spike_threshold without a spike;
    every upward crossing used to count. A spike now needs a repolarisation (below
    spike_reset) too."""
    import numpy as np

    from neurosearch.simulators.engine import CellRunner
    from neurosearch.simulators.stimulus import spike_trains

    counts = {}
    for reset in (-40.0, -20.000001):  # the default, and one that makes every crossing a spike (the old rule)
        builder = tmp_path / f"cell{len(counts)}.py"
        builder.write_text(BLOCKED.replace("{reset}", str(reset)))
        runner = CellRunner(build_custom(f"{builder}:build", None))
        index, ms = spike_trains(np.random.default_rng(0), StimulusSpec(rate_scale=(16.0, 16.0)), runner.inputs.kind,
                                 runner.inputs.group, 2000)
        result = runner.run(index, ms, 2000)
        counts[reset] = (result.spike_times.size, result.held_times.size)
    (spikes, held), (old_rule, old_held) = counts[-40.0], counts[-20.000001]
    assert held >= 10 and spikes == 0  # at 16x the soma sits near -22 mV, oscillating across -20 mV
    assert old_rule + old_held == spikes + held  # the same crossings ...
    assert old_rule >= held - 1  # ... which the old rule counted as spikes

    builder = tmp_path / "blocked.py"
    builder.write_text(BLOCKED.replace("{reset}", "-40.0"))
    spec = calibrated(builder, tmp_path).model_copy(
        update={"stimulus": StimulusSpec(calibration_probes=1, output_rate_hz=(40.0, 80.0), mean_rate_hz=50.0)})
    with pytest.raises(SimulatorError, match=r"its soma is held depolarised \(.* crossings of spike_threshold per s "
                                             r"without repolarising below CellModel.spike_reset: depolarisation block"):
        generate(spec, tmp_path / "data", progress=False)
