"""The own_synapses example: a user's cell whose synapses come from its own NMODL through
CellModel.synapse_factory, calibrated at the default output rate (mean 1 Hz). Real
nrnivmodl, real NEURON, real calibration probes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE = EXAMPLES / "own_synapses"


def copy_examples(tmp_path: Path) -> Path:
    """The example and the small_pyramid folder whose morphology it names by a relative path."""
    for name in ("own_synapses", "small_pyramid"):
        shutil.copytree(EXAMPLES / name, tmp_path / "examples" / name, ignore=shutil.ignore_patterns("work"))
    return tmp_path / "examples" / "own_synapses"


# In its own process: the builder makes top-level hoc sections, which must not meet other tests'.
BUILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from neurosearch.simulators import nmodl
    from neurosearch.simulators.cells import build_custom
    from neurosearch.simulators.engine import CellRunner

    example = Path(sys.argv[1])
    nmodl.load_mechanisms(nmodl.BUNDLED_MECHANISMS)  # loaded beside the cell's own, as in a worker
    nmodl.load_mechanisms(example / "mechanisms")
    cell = build_custom(f"{example / 'cell.py'}:build", (example / sys.argv[2]).resolve())
    runner = CellRunner(cell)
    names = [syn.hname().split("[")[0] for syn in runner.synapses]
    print(json.dumps({"sites": len(cell.sites), "branches": sorted({b for _, b in cell.sites}),
                      "per_input": [len(ncs) for ncs in runner.netcons], "synapses": names,
                      "kinds": runner.inputs.kind.tolist(),
                      "on_site": all(syn.get_segment() == seg for syn, (seg, _) in
                                     zip(runner.synapses, [*cell.sites, *cell.sites]))}))
""")


def test_sites_carry_the_examples_own_synapses_not_the_bundled_ones(tmp_path: Path) -> None:
    example = copy_examples(tmp_path)
    result = subprocess.run([sys.executable, "-c", BUILD, str(example), "../small_pyramid/morphology.swc"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    built = json.loads(result.stdout.strip().splitlines()[-1])
    n = built["sites"]
    assert n == 67 and built["branches"] == [0, 1, 2, 3, 4]  # one per dendritic segment, one id per section
    assert built["per_input"] == [1] * (2 * n)  # one point process per input
    assert built["synapses"] == ["os_AmpaNmda"] * n + ["os_GabaA"] * n
    assert built["kinds"] == [0] * n + [1] * n
    assert not any(name.startswith("ns_") for name in built["synapses"])
    assert built["on_site"]  # each on the segment of its site


def test_calibrates_at_the_default_one_hz(tmp_path: Path) -> None:
    example = copy_examples(tmp_path)
    config = example / "search.toml"
    assert not re.search(r"^\s*(output_rate_hz|mean_rate_hz)\s*=", config.read_text(), re.M)  # the defaults
    result = subprocess.run(
        [sys.executable, "-m", "neurosearch.search.cli", "simulate", "--calibrate-only", "--no-progress",
         "--config", str(config),
         "--set", "simulator.processes=2",
         "--set", "simulator.duration_ms=2500",  # shorter simulations: each centring probe is a whole one
         "--set", "simulator.stimulus.calibration_probes=1",  # one probe per drive level
         "--set", "simulator.stimulus.calibration_check=16"],  # 16 probes of 2 s per centring round
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("calibration (output rate at drive × nominal, 1 probes each): ") for line in lines)
    centred = next(line for line in lines if line.startswith("centred on 1 Hz"))
    mean = float(re.search(r"probes' mean ([0-9.]+) Hz$", centred)[1])
    assert abs(mean - 1.0) <= 0.1, centred  # the calibration's own tolerance (calibration_tolerance = 0.1)
    assert not any(line.startswith("warning:") for line in lines)
    (kept,) = (example / "work" / "datasets" / "calibrations").glob("*.json")  # the curve is kept too
    assert json.loads(kept.read_text())["centring"]["target_hz"] == 1.0
