"""A tiny study through the real command line: NEURON → Optuna (SQLite) → MLflow → report."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from mlflow import MlflowClient


def neurosearch(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neurosearch.search.cli", *args], cwd=cwd, capture_output=True, text=True, **kwargs
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_toml) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("study")
    (root / "search.toml").write_text(tiny_toml())
    result = neurosearch("run", "--no-progress", "--json", "report.json", cwd=root, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, result


def test_report_names_the_shallowest_passing_depth(finished) -> None:
    root, result = finished
    report = json.loads((root / "report.json").read_text())
    assert [(r["family"], r["depth"]) for r in report["rows"]] == [("tcn", 1), ("tcn", 2)]
    winner = report["winner"]
    assert winner is not None and winner["family"] == "tcn"
    assert set(winner["test"]) >= {"spike_auc", "voltage_rmse", "voltage_ev", "voltage_ev_calibrated"}
    if winner["passes"]:
        assert winner["depth"] == report["shallowest"]["tcn"]
    assert "shallowest passing depth" in result.stdout or "no depth meets the target" in result.stdout


def test_optuna_storage_holds_the_plan(finished) -> None:
    root, _ = finished
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/state/optuna.db")
    assert sorted((t.params["depth"], t.state) for t in study.trials)[0][0] == 1
    assert len(study.trials) == 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert study.user_attrs["dataset_hash"] and study.user_attrs["target_metric"] == "spike_auc"
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            # every epoch reported; a network that clears the target on validation stops early
            assert 1 <= len(t.intermediate_values) <= 2 and 0.0 <= t.value <= 1.0
            # a trial stands for its best validation epoch (whose weights it saved)
            assert t.value == max(t.intermediate_values.values())
            assert t.intermediate_values[t.user_attrs["best_epoch"]] == t.value
            assert t.user_attrs["spec"]["depth"] == t.params["depth"] == t.user_attrs["reported_depth"]


def test_mlflow_has_a_study_run_with_a_child_per_trial(finished) -> None:
    root, _ = finished
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/tracking/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("neurosearch.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2
    assert "test_spike_auc" in parents[0].data.metrics
    for child in children:
        tags = child.data.tags
        assert tags["optuna.study"] == "tiny" and tags["family"] == "tcn" and tags["depth"] in ("1", "2")
        assert tags["state"] in ("COMPLETE", "PRUNED") and child.info.status == "FINISHED"
        assert "arch.width" in child.data.params or any(k.startswith("arch.") for k in child.data.params)
        history = client.get_metric_history(child.info.run_id, "val_spike_auc")
        assert [m.step for m in history] == list(range(len(history))) and history


def test_report_reads_several_studies_side_by_side(finished, tmp_path: Path) -> None:
    """Studies from one storage and from another, one table / JSON / figure / MLflow run;
    each row's figures are its own study's report's."""
    root, _ = finished
    here = f"sqlite:///{root}/state/optuna.db"
    elsewhere = f"sqlite:///{tmp_path}/other.db"
    optuna.copy_study(from_study_name="tiny", from_storage=here, to_storage=elsewhere, to_study_name="twin")
    single = json.loads((root / "report.json").read_text())
    result = neurosearch("report", "--study", "tiny", "--study", f"twin@{elsewhere}", "--json",
                         "--figure", str(tmp_path / "cells.png"), "--mlflow", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["study"], r["family"], r["cell"]) for r in rows] == [("tiny", "tcn", "l5pc"), ("twin", "tcn", "l5pc")]
    for row in rows:
        assert row["shallowest"] == single["shallowest"]["tcn"] and row["neuron_core_s"] > 0 and row["trials"] == 2
        assert row["threshold"] == single["threshold"]
        assert [d["test"] for d in row["depths"]] == [r["test"] for r in single["rows"]]
        assert [d["fci"] for d in row["depths"]] == [r["fci"] for r in single["rows"]]
    assert rows[1]["storage"] == elsewhere and rows[0]["train_s"] == sum(r["seconds"] for r in single["rows"])
    assert (tmp_path / "cells.png").read_bytes()[:4] == b"\x89PNG"
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/tracking/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("neurosearch comparisons").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert artifacts == {"comparison.json", "comparison.png"}
    history = client.get_metric_history(runs[0].info.run_id, "twin.tcn.test_spike_auc")
    assert [(m.step, m.value) for m in history] == [(r["depth"], r["test"][0]) for r in single["rows"] if r["test"]]

    text = neurosearch("report", "--study", f"tiny@{here}", "--study", f"twin@{elsewhere}", cwd=tmp_path)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "cells side by side" in text.stdout and "tiny (l5pc), tcn:" in text.stdout
    optuna.copy_study(from_study_name="tiny", from_storage=here, to_storage=elsewhere, to_study_name="rmse")
    optuna.load_study(study_name="rmse", storage=elsewhere).set_user_attr("target_metric", "voltage_rmse")
    for args, message in {("--study", f"twin@{elsewhere}", "--study", f"rmse@{elsewhere}"): "different metrics",
                          ("--study", "tiny@", "--study", "twin"): "write NAME@URL",
                          ("--study", "tiny", "--study", "twin"): "names no storage"}.items():
        bad = neurosearch("report", *args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stdout and "Traceback" not in bad.stdout + bad.stderr, bad.stdout


def test_a_skipped_slot_is_reported_as_skipped_not_failed(finished, tmp_path: Path, tiny_toml) -> None:
    """Two trials per depth. Depth 1's first network clears the threshold on validation
    after one epoch, so it stops training and the depth is settled at once: confirmed on test, its second
    trial skipped, and, as it passes, depth 2's slots too. Skipped slots are stored as
    FAIL for the sampler's sake, but the progress lines say SKIPPED and why, not FAIL."""
    root, _ = finished
    text = (tiny_toml().replace("skip_deeper_once_passing = false", "skip_deeper_once_passing = true")
            .replace("trials_per_depth = 1", "trials_per_depth = 2")
            .replace("threshold = 0.5", "threshold = 0.4"))  # what its one-epoch network clears on test too
    (tmp_path / "search.toml").write_text(text)
    shutil.copytree(root / "state" / "datasets", tmp_path / "state" / "datasets")  # the same dataset, cached
    result = neurosearch("run", "--no-progress", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tcn: shallowest passing depth 1" in result.stdout, result.stdout
    lines = {int(m.group(1)): line for line in result.stdout.splitlines() if (m := re.match(r"trial (\d+) tcn", line))}
    assert lines[0].startswith("trial 0 tcn depth 1: COMPLETE"), lines
    assert lines[1].startswith("trial 1 tcn depth 1: SKIPPED tcn depth 1 is settled: candidate trial 0"), lines
    for number in (2, 3):
        assert lines[number].startswith(f"trial {number} tcn depth 2: SKIPPED tcn already passes"), lines
    assert not any("FAIL" in line for line in lines.values())
    assert "candidate trial 0 on the test split" in result.stdout
    trial = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/state/optuna.db").trials[0]
    assert len(trial.intermediate_values) == 1  # of 2 epochs: its network cleared the target after the first


def test_a_network_stopped_on_the_target_is_not_trained_on_by_a_resumed_worker(finished, tmp_path: Path) -> None:
    """A worker that dies after its network cleared the target (checkpoint written, trial not
    yet finished) hands the trial to another; that one must not train the remaining epochs."""
    from neurosearch.search.config import load_config
    from neurosearch.search.study.workspace import load_model
    from neurosearch.search.training.data import SplitTensors
    from neurosearch.search.training.train import Trainer

    root, _ = finished
    dataset, _ = first_test_simulation(root)
    settings = load_config(root / "search.toml").training
    cpu = torch.device("cpu")
    train, valid = SplitTensors(dataset, "train", cpu), SplitTensors(dataset, "valid", cpu)
    uid = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/state/optuna.db").user_attrs["study_uid"]
    saved = root / "state" / "studies" / "tiny" / uid / "models" / "trial-0.pt"

    def trainer(checkpoint: Path) -> Trainer:
        return Trainer(load_model(saved, "cpu")[0], train, valid, settings, 1e-3, seed=0, checkpoint=checkpoint)

    assert len(trainer(tmp_path / "stopped.pt").fit(enough=lambda prediction: True)) == 1
    assert len(trainer(tmp_path / "stopped.pt").fit()) == 1  # resumed: the question was settled
    assert len(trainer(tmp_path / "plain.pt").fit(enough=lambda prediction: False)) == settings.epochs == 2


def test_second_run_resumes_without_new_work(finished) -> None:
    root, _ = finished
    shards = {p: p.stat().st_mtime_ns for p in (root / "state" / "datasets").rglob("*") if p.is_file() and not p.name.startswith(".")}  # not the lock files
    again = neurosearch("run", "--no-progress", cwd=root, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed" in again.stdout and "(0 trials planned now)" in again.stdout
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/state/optuna.db")
    assert len(study.trials) == 2
    assert {p: p.stat().st_mtime_ns for p in shards} == shards


def test_report_command_reads_the_storage_alone(finished, tmp_path: Path) -> None:
    root, _ = finished
    result = neurosearch("report", "--storage", f"sqlite:///{root}/state/optuna.db", "--study", "tiny", "--json",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["study"] == "tiny"
    missing = neurosearch("report", "--storage", f"sqlite:///{root}/state/optuna.db", "--study", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no study named 'nope'" in missing.stdout and "Traceback" not in missing.stdout


# --------------------------------------------------------------------------- what the MLflow UI shows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file (and that it is one)."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def tiny_runs(root: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/tracking/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    study_run = next(r for r in runs if r.data.tags.get("neurosearch.kind") == "study")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study_run.info.run_id]
    return client, study_run, children


def test_study_run_has_frontier_summary_and_winner_metrics(finished, tmp_path: Path) -> None:
    root, _ = finished
    report = json.loads((root / "report.json").read_text())
    client, study_run, _ = tiny_runs(root)
    run_id = study_run.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"depth_frontier.png", "summary.csv", "summary.md", "report.json", "winner_test_metrics.json"} <= names

    def get(name: str) -> Path:
        return Path(client.download_artifacts(run_id, name, str(tmp_path)))

    width, height = png_size(get("depth_frontier.png"))
    assert width >= 400 and height >= 300
    rows = list(csv.DictReader(get("summary.csv").open()))
    assert [(r["family"], int(r["depth"])) for r in rows] == [(r["family"], r["depth"]) for r in report["rows"]]
    for row, want in zip(rows, report["rows"]):
        assert float(row["best"]) == pytest.approx(want["best"]) and int(row["best_trial"]) == want["best_trial"]
        assert row["passes"] == str(want["passes"])
        if want["test"]:  # the depth's candidate on test, with its 95% interval
            assert [float(row[k]) for k in ("test", "test_low", "test_high")] == pytest.approx(want["test"])
            assert float(row["test_low"]) <= float(row["test"]) <= float(row["test_high"])
    markdown = get("summary.md").read_text()
    assert markdown.startswith("# Study tiny: best validation spike_auc per depth")
    assert "| tcn | 1 |" in markdown and "| tcn | 2 |" in markdown
    winner = json.loads(get("winner_test_metrics.json").read_text())
    assert winner["trial"] == report["winner"]["trial"] and winner["depth"] == report["winner"]["depth"]
    assert winner["test"] == pytest.approx(report["winner"]["test"])
    assert json.loads(get("report.json").read_text())["winner"]["trial"] == report["winner"]["trial"]
    for key, value in report["winner"]["test"].items():
        if value is None:  # undefined (the tiny study fires above 1 Hz: no 1 Hz view): null in JSON, not logged
            assert f"test_{key}" not in study_run.data.metrics and key in ("spike_auc_1hz", "fci")
        else:
            assert study_run.data.metrics[f"test_{key}"] == pytest.approx(value)
    assert study_run.data.tags["registered_model"] == "tiny-surrogate"


def test_each_trial_run_has_curves_roc_trace_spec_and_weights(finished, tmp_path: Path) -> None:
    root, _ = finished
    client, _, children = tiny_runs(root)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/state/optuna.db")
    trials = {t.number: t for t in study.trials}
    assert len(children) == len(trials) == 2
    system_metrics = os.environ.get("NEUROSEARCH_SYSTEM_METRICS", "1").lower() not in ("0", "false", "off")
    for child in children:
        number = int(child.data.tags["optuna.trial"])
        trial = trials[number]
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        folder = tmp_path / f"trial-{number}"
        folder.mkdir()
        plots = ["learning_curves.png"]
        if trial.state == TrialState.COMPLETE:  # a pruned trial has no final model to plot
            plots += ["roc_curve.png", "voltage_trace.png"]
            weights = [a.path for a in client.list_artifacts(child.info.run_id, "weights")]
            assert weights == [f"weights/trial-{number}.pt"]
            saved = Path(client.download_artifacts(child.info.run_id, weights[0], str(folder)))
            models = root / "state" / "studies" / "tiny" / study.user_attrs["study_uid"] / "models"
            assert saved.read_bytes() == (models / f"trial-{number}.pt").read_bytes()
        assert {*plots, "spec.json"} <= names, names
        for plot in plots:
            width, height = png_size(Path(client.download_artifacts(child.info.run_id, plot, str(folder))))
            assert width >= 300 and height >= 300
        spec = json.loads(Path(client.download_artifacts(child.info.run_id, "spec.json", str(folder))).read_text())
        assert spec == trial.user_attrs["spec"]
        if system_metrics:  # psutil is a dependency: MLflow's system metrics monitor runs on every trial
            wanted = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"}
            assert wanted <= set(child.data.metrics), sorted(child.data.metrics)


# --------------------------------------------------------------------------- the winner outside neurosearch


def first_test_simulation(root: Path):
    """The first test-split simulation of the study's dataset (what `export` checks on)."""
    from neurosearch.simulators import Dataset

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/state/optuna.db")
    dataset = Dataset.open(Path(study.user_attrs["dataset_path"]))
    return dataset, dataset.load(dataset.indices("test")[0])


def in_process(root: Path, trial: int, spikes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The saved network as neurosearch itself runs it: spike probability, voltage in mV."""
    from neurosearch.search.study.workspace import load_model

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/state/optuna.db")
    uid = study.user_attrs["study_uid"]
    net, saved = load_model(root / "state" / "studies" / "tiny" / uid / "models" / f"trial-{trial}.pt", "cpu")
    with torch.no_grad():
        logit, v = net(spikes)
    return torch.sigmoid(logit).numpy(), (v * saved["v_std"] + saved["v_mean"]).numpy()


def printed_differences(stdout: str) -> dict[str, float]:
    line = next(line for line in stdout.splitlines() if "max |exported - in-process|" in line)
    return {name: float(value) for name, value in re.findall(r"(spike_probability|voltage_mV) (\S+?)(?:,|$)", line)}


@pytest.fixture(scope="module")
def exported(finished) -> tuple[Path, int, subprocess.CompletedProcess]:
    root, _ = finished
    result = neurosearch("export", "--format", "torchscript", cwd=root, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    winner = json.loads((root / "report.json").read_text())["winner"]["trial"]
    path = root / "state" / "exports" / f"tiny-trial-{winner}.pt"
    assert f"trial {winner} exported as torchscript: {path}" in result.stdout, result.stdout
    return path, winner, result


def test_torchscript_export_predicts_like_the_trained_network(finished, exported) -> None:
    root, _ = finished
    path, winner, result = exported
    printed = printed_differences(result.stdout)
    assert set(printed) == {"spike_probability", "voltage_mV"} and max(printed.values()) <= 1e-4, result.stdout
    _, sim = first_test_simulation(root)
    assert "test simulation" in result.stdout

    model = torch.jit.load(str(path), map_location="cpu")  # no neurosearch class needed to load it
    spikes = torch.from_numpy(sim.dense_input()).float()[None]
    with torch.no_grad():
        prob, volts = (t.numpy() for t in model(spikes))
    want_prob, want_volts = in_process(root, winner, spikes)
    assert prob.shape == volts.shape == (1, sim.duration_ms)
    diffs = {"spike_probability": float(np.abs(prob - want_prob).max()),
             "voltage_mV": float(np.abs(volts - want_volts).max())}
    print("torchscript round trip, max |exported - in-process|:", diffs)
    assert max(diffs.values()) <= 1e-4, diffs
    assert ((prob >= 0) & (prob <= 1)).all()
    # in mV, not standardised: near NEURON's (clipped) somatic voltage even for a barely trained network
    assert abs(float(volts.mean()) - float(np.minimum(sim.voltage, -55.0).mean())) < 15.0

    # a feed-forward network exports with dynamic batch and time axes
    other = (torch.rand(2, sim.n_inputs, 700, generator=torch.Generator().manual_seed(3)) < 0.02).float()
    with torch.no_grad():
        got = [t.numpy() for t in model(other)]
    for g, w in zip(got, in_process(root, winner, other)):
        assert g.shape == (2, 700) and np.abs(g - w).max() <= 1e-4

    info = json.loads(Path(f"{path}.json").read_text())
    assert info["format"] == "torchscript" and info["trial"] == winner and info["n_inputs"] == sim.n_inputs
    assert info["fixed_time_ms"] is None and info["dataset"] and Path(info["dataset"]).is_dir()
    assert set(info["max_abs_diff"]) == {"spike_probability", "voltage_mV"}


def test_onnx_export_predicts_like_the_trained_network(finished, tmp_path: Path) -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module)
    import onnxruntime

    root, _ = finished
    output = tmp_path / "winner.onnx"
    result = neurosearch("export", "--format", "onnx", "--output", str(output), cwd=root, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    printed = printed_differences(result.stdout)
    assert set(printed) == {"spike_probability", "voltage_mV"} and max(printed.values()) <= 1e-4, result.stdout

    winner = json.loads((root / "report.json").read_text())["winner"]["trial"]
    _, sim = first_test_simulation(root)
    spikes = torch.from_numpy(sim.dense_input()).float()[None]
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["spikes"]
    prob, volts = session.run(["spike_probability", "voltage_mV"], {"spikes": spikes.numpy()})
    want_prob, want_volts = in_process(root, winner, spikes)
    diffs = {"spike_probability": float(np.abs(prob - want_prob).max()),
             "voltage_mV": float(np.abs(volts - want_volts).max())}
    print("onnx round trip, max |exported - in-process|:", diffs)
    assert max(diffs.values()) <= 1e-4, diffs


def test_readme_snippet_predicts_a_test_simulation(finished, exported) -> None:
    """The README's "Using the winner outside neurosearch" example, run as written
    (only the exported file's name is the tiny study's)."""
    root, _ = finished
    path, _, _ = exported
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Using the winner outside neurosearch", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    example = re.search(r'"(work/exports/[^"]+\.pt)"', snippet)
    assert example, "the README snippet names no exported file"
    script = root / "readme_snippet.py"
    script.write_text(snippet.replace(example.group(1), str(path)))
    result = subprocess.run([sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"voltage RMSE \d+\.\d+ mV; \d+ predicted vs \d+ NEURON spikes", result.stdout), result.stdout


def test_registered_winner_loads_with_mlflow_on_cpu(finished, tmp_path: Path) -> None:
    """The registry's model, loaded by mlflow.pytorch in a fresh process without CUDA and
    without neurosearch, predicts what the trained network predicts."""
    root, _ = finished
    uri = f"sqlite:///{root}/tracking/mlflow.db"
    winner = json.loads((root / "report.json").read_text())["winner"]["trial"]
    versions = MlflowClient(tracking_uri=uri).search_model_versions("name = 'tiny-surrogate'")
    assert len(versions) == 1, "a resumed study whose winner did not change must not register it again"
    assert versions[0].tags["optuna.trial"] == str(winner) and versions[0].run_id == tiny_runs(root)[1].info.run_id
    _, sim = first_test_simulation(root)
    spikes = torch.from_numpy(sim.dense_input()).float()[None]
    np.save(tmp_path / "spikes.npy", spikes.numpy())
    probe = f"""
import json, sys
import numpy as np, torch, mlflow.pytorch
from mlflow.models import get_model_info
uri = "models:/tiny-surrogate/{versions[0].version}"
spec = get_model_info(uri).signature.inputs.to_dict()[0]
model = mlflow.pytorch.load_model(uri, map_location="cpu")
with torch.no_grad():
    prob, volts = model(torch.from_numpy(np.load("spikes.npy")))
np.savez("out.npz", prob=prob.numpy(), volts=volts.numpy())
print(json.dumps({{"spec": spec, "device": str(prob.device), "cuda": torch.cuda.is_available(),
                   "neurosearch": sorted(m for m in sys.modules if m.startswith("neurosearch"))}}))
"""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["spec"]["name"] == "spikes" and list(found["spec"]["tensor-spec"]["shape"]) == [-1, sim.n_inputs, -1]
    assert found["device"] == "cpu" and not found["cuda"] and found["neurosearch"] == []
    out = np.load(tmp_path / "out.npz")
    want_prob, want_volts = in_process(root, winner, spikes)
    diffs = {"spike_probability": float(np.abs(out["prob"] - want_prob).max()),
             "voltage_mV": float(np.abs(out["volts"] - want_volts).max())}
    print("registered model, max |mlflow.pytorch - in-process|:", diffs)
    assert max(diffs.values()) <= 1e-4, diffs


def test_export_mistakes_are_one_line_errors(finished, tmp_path: Path) -> None:
    root, _ = finished
    cases = {
        ("--format", "tflite"): "--format must be torchscript or onnx",
        ("--trial", "99"): "trial 99 of study 'tiny' has no saved model",
        ("--output", str(tmp_path)): "is a folder; give --output a file name",
    }
    for args, message in cases.items():
        result = neurosearch("export", *args, cwd=root, timeout=300)
        assert result.returncode == 2 and message in result.stdout, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        assert len(result.stdout.strip().splitlines()) == 1, result.stdout  # one line, however long
