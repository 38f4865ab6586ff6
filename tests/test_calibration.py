"""Ground truth that fires: the calibrated drive, stable splits, the refusal of silent splits.

Real NEURON runs of the bundled AMPA twin (its probes are the cheapest), a few seconds
of simulated time each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from neurosearch.simulators import SimulationSpec, SimulatorError, generate
from neurosearch.simulators.calibrate import calibration_key
from neurosearch.simulators.spec import split_of

HIGH_RATE = {"output_rate_hz": (6.0, 24.0), "mean_rate_hz": 13.0}
"""The documented high-rate setting: no silent simulation even in 1 s, so small tests can score every split."""
SMALL = dict(model="l5pc_ampa", duration_ms=1300, discard_ms=300, seed=3, processes=2,
             stimulus={"calibration_probes": 2, "calibration_check": 8, **HIGH_RATE})


def test_calibrated_drive_fires_and_is_reused(tmp_path: Path) -> None:
    spec = SimulationSpec(n_simulations=8, **SMALL)
    dataset = generate(spec, tmp_path, progress=False)
    record = dataset.manifest["calibration"]
    low, high = record["rate_scale"]
    assert 0 < low <= high <= max(record["levels"])
    # the curve the range came from: silent at the bottom of the grid, firing at the top
    assert record["mean_rate_hz"][0] < spec.stimulus.output_rate_hz[0] <= max(record["mean_rate_hz"])
    assert (dataset.output_rates_hz() > 0).all(), dataset.rate_summary()
    assert "silent 0 of 8" in dataset.rate_summary()
    # a larger dataset of the same cell and stimulus reuses the calibration file
    cached = tmp_path / "calibrations" / f"{calibration_key(spec)}.json"
    stamp = cached.stat().st_mtime_ns
    bigger = generate(SimulationSpec(n_simulations=10, **SMALL), tmp_path, progress=False)
    assert bigger.manifest["calibration"] == record and cached.stat().st_mtime_ns == stamp
    # and its first eight simulations are the same simulations in the same splits
    for split in ("train", "valid", "test"):
        assert [i for i in bigger.indices(split) if i < 8] == dataset.indices(split)
    assert np.array_equal(bigger.load(7).voltage, dataset.load(7).voltage)


def test_cell_that_cannot_reach_the_target_rate_is_one_clear_error(tmp_path: Path) -> None:
    spec = SimulationSpec(n_simulations=3, split=(0.34, 0.33, 0.33),
                          **{**SMALL, "stimulus": {"calibration_probes": 1, "output_rate_hz": (400.0, 450.0),
                                                   "mean_rate_hz": 420.0}})
    with pytest.raises(SimulatorError, match="fires at most .* below the calibration's lowest target of 400 Hz"):
        generate(spec, tmp_path, progress=False)
    assert not list((tmp_path).glob("*/shards/*.npz"))  # nothing simulated on a failed calibration


def test_splits_are_stable_as_the_dataset_grows_and_close_to_the_fractions() -> None:
    fractions = (0.6, 0.2, 0.2)
    small = SimulationSpec(n_simulations=100, seed=7, split=fractions, stimulus={"rate_scale": (1, 2)})
    large = SimulationSpec(n_simulations=1000, seed=7, split=fractions, stimulus={"rate_scale": (1, 2)})
    for split, ids in small.split_indices().items():
        assert [i for i in large.split_indices()[split] if i < 100] == ids
    counts = {name: len(ids) for name, ids in large.split_indices().items()}
    assert counts == pytest.approx({"train": 600, "valid": 200, "test": 200}, abs=3)
    assert [split_of(7, i, fractions) for i in range(40)] != [split_of(8, i, fractions) for i in range(40)]


def test_a_split_that_would_be_empty_is_refused() -> None:
    with pytest.raises(ValueError, match="leaves the .* split empty; n_simulations = (\\d+) gives every split") as info:
        SimulationSpec(n_simulations=3, seed=0, stimulus={"rate_scale": (1, 2)})
    enough = int(re.search(r"n_simulations = (\d+)", str(info.value)).group(1))
    assert all(SimulationSpec(n_simulations=enough, seed=0, stimulus={"rate_scale": (1, 2)}).split_indices().values())
    with pytest.raises(ValueError, match="leaves the"):
        SimulationSpec(n_simulations=enough - 1, seed=0, stimulus={"rate_scale": (1, 2)})  # the smallest such count


def test_manifest_records_the_calibration_and_rates(tmp_path: Path) -> None:
    spec = SimulationSpec(n_simulations=6, **{**SMALL, "stimulus": {"rate_scale": (2.0, 4.0)}})
    dataset = generate(spec, tmp_path, progress=False)
    manifest = json.loads((dataset.path / "manifest.json").read_text())
    assert "calibration" not in manifest  # a drive range given outright is not calibrated
    assert manifest["spec"]["stimulus"]["rate_scale"] == [2.0, 4.0]
    assert len(dataset.output_rates_hz("valid")) == len(dataset.indices("valid"))


def test_a_silent_split_is_refused_with_one_clear_message(tmp_path: Path) -> None:
    import torch

    from neurosearch.search.errors import UserError
    from neurosearch.search.training.data import SplitTensors

    spec = SimulationSpec(n_simulations=6, **{**SMALL, "stimulus": {"rate_scale": (0.05, 0.05)}})
    dataset = generate(spec, tmp_path, progress=False)
    assert dataset.output_rates_hz().max() == 0
    with pytest.raises(UserError, match="the valid split .* holds 0 output spikes in 0 of"):
        SplitTensors(dataset, "valid", torch.device("cpu"))


def test_drive_is_centred_on_the_anchors_mean_rate_of_1_hz(tmp_path: Path) -> None:
    """The default protocol: the range is shifted (width kept) until probes drawn like the
    dataset fire at 1 Hz on average, and the record says how it got there."""
    from neurosearch.simulators import calibrate_drive
    from neurosearch.simulators.calibrate import describe

    spec = SimulationSpec(n_simulations=8, **{**SMALL, "duration_ms": 3300,
                                              "stimulus": {"calibration_probes": 2, "calibration_check": 32}})
    assert spec.stimulus.mean_rate_hz == 1.0 and spec.stimulus.output_rate_hz == (0.2, 3.0)  # the defaults
    record = calibrate_drive(spec, tmp_path, progress=False)
    centring = record["centring"]
    assert centring["target_hz"] == 1.0 and centring["probes"] == 32 and centring["probe_ms"] == 3000
    assert abs(centring["mean_rate_hz"] - 1.0) <= 0.1, centring  # within calibration_tolerance
    first, chosen = centring["rounds"][0], next(r for r in centring["rounds"] if r["mean_rate_hz"] == centring["mean_rate_hz"])
    # the rounds moved the drive towards the target: the first round's miss was at least as large
    assert abs(first["mean_rate_hz"] - 1.0) >= abs(chosen["mean_rate_hz"] - 1.0)
    low, high = record["rate_scale"]
    assert 0 < low < high
    text = describe(record)
    assert "centred on 1 Hz" in text and f"probes' mean {centring['mean_rate_hz']:.2f} Hz" in text


def test_a_dataset_that_misses_its_target_rate_says_so(tmp_path: Path) -> None:
    """simulate prints the realised mean against the target, and warns past ±25%."""
    from neurosearch.simulators import calibrate

    spec = SimulationSpec(n_simulations=5, split=(0.5, 0.25, 0.25), **SMALL)
    path, _ = calibrate.cached_calibration(tmp_path, spec)
    # a calibration that promised 4 Hz with a drive that makes this cell fire much faster
    calibrate.save_calibration(path, {"rate_scale": [6.0, 6.0], "centring": {"target_hz": 4.0}})
    dataset = generate(spec, tmp_path, progress=False)
    mean = dataset.output_rates_hz().mean()
    assert mean > 4.0 * 1.25
    assert f"mean {mean:.2f} Hz (target 4 Hz)" in dataset.rate_summary()
    assert dataset.rate_warning().startswith(f"warning: the simulations fire at a mean {mean:.2f} Hz")


def test_a_mean_rate_outside_the_range_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"mean_rate_hz 1 lies outside output_rate_hz \[6, 24\].*= 13 Hz"):
        SimulationSpec(n_simulations=3, split=(0.34, 0.33, 0.33), stimulus={"output_rate_hz": (6.0, 24.0)})
