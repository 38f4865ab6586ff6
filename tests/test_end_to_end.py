"""A tiny study through the real command line: NEURON → Optuna (SQLite) → MLflow → report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

TINY = """
[study]
name = "tiny"
storage = "sqlite:///state/optuna.db"
work_dir = "state"
trials_per_depth = 1
heartbeat_s = 2
grace_s = 6

[tracking]
uri = "sqlite:///tracking/mlflow.db"
artifacts = "tracking/artifacts"

[target]
threshold = 0.5

[training]
epochs = 2
steps_per_epoch = 4
batch_size = 4
window_ms = 300
burn_in_ms = 60

[simulator]
model = "l5pc"
n_simulations = 6
duration_ms = 1300
discard_ms = 300
processes = 2

[spaces.tcn]
depths = [1, 2]
"""


def neurosearch(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neurosearch.search.cli", *args], cwd=cwd, capture_output=True, text=True, **kwargs
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("study")
    (root / "search.toml").write_text(TINY)
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
            assert len(t.intermediate_values) == 2 and 0.0 <= t.value <= 1.0
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


def test_second_run_resumes_without_new_work(finished) -> None:
    root, _ = finished
    shards = {p: p.stat().st_mtime_ns for p in (root / "state" / "datasets").rglob("*") if p.is_file()}
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


def test_ctrl_c_mid_trial_then_resume(tmp_path: Path) -> None:
    (tmp_path / "search.toml").write_text(
        TINY.replace("epochs = 2", "epochs = 4").replace("steps_per_epoch = 4", "steps_per_epoch = 25")
    )
    storage = f"sqlite:///{tmp_path}/state/optuna.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "neurosearch.search.cli", "run", "--no-progress"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline:  # wait until the first trial has finished an epoch (and checkpointed it)
        time.sleep(1)
        try:
            trials = optuna.load_study(study_name="tiny", storage=storage).trials
        except (KeyError, Exception):
            continue
        if any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials):
            break
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "run the same command again to resume" in output
    interrupted = [t for t in optuna.load_study(study_name="tiny", storage=storage).trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 1 and "interrupted" in interrupted[0].user_attrs["fail_reason"]
    assert (tmp_path / "state" / "studies" / "tiny" / "checkpoints" / f"trial-{interrupted[0].number}.pt").exists()

    again = neurosearch("run", "--no-progress", cwd=tmp_path, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == interrupted[0].number]
    assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry[0].user_attrs["resumed_epochs"] >= 1
    finished_slots = {(t.params["depth"]) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert finished_slots == {1, 2}
