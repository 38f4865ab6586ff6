"""Many workers on one study in a real PostgreSQL database (127.0.0.1:5432, user postgres).

Each test gets fresh databases for Optuna and MLflow. Workers are real
`neurosearch worker` processes sharing one work folder (the shared file system).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mlflow import MlflowClient

pytestmark = pytest.mark.postgres

STUDY = """
[study]
name = "shared"
work_dir = "shared-fs"
trials_per_depth = 2
heartbeat_s = 1
grace_s = 6
skip_deeper_once_passing = false

[tracking]
artifacts = "shared-fs/mlflow-artifacts"

[target]
threshold = 0.999

[training]
epochs = 3
steps_per_epoch = 3
batch_size = 4
window_ms = 300
burn_in_ms = 60
pruning = "none"

[simulator]
n_simulations = 6
duration_ms = 1300
discard_ms = 300
seed = 2          # every split holds output spikes
processes = 2

[simulator.stimulus]
rate_scale = [1.2, 2.2]    # given, not calibrated: keeps the tiny study short

[spaces.tcn]
depths = [1, 2]
"""


@pytest.fixture
def databases(postgres) -> list[str]:
    """Two fresh databases (Optuna, MLflow) on the local server; dropped afterwards."""
    return [postgres.database("ns_optuna"), postgres.database("ns_mlflow")]


def _setup(tmp_path: Path, databases: list[str], extra: str = "") -> tuple[Path, str]:
    optuna_url, mlflow_url = databases
    text = STUDY.replace("[tracking]\n", f'[tracking]\nuri = "{mlflow_url}"\n') + extra
    text = text.replace('[study]\n', f'[study]\nstorage = "{optuna_url}"\n')
    (tmp_path / "search.toml").write_text(text)
    made = subprocess.run([sys.executable, "-m", "neurosearch.search.cli", "simulate", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    return tmp_path, optuna_url


def _worker(root: Path, log: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "neurosearch.search.cli", "worker", "--no-progress"],
        cwd=root, stdout=open(root / log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _wait_all(procs: list[subprocess.Popen], root: Path, timeout: float = 900) -> None:
    for i, proc in enumerate(procs):
        code = proc.wait(timeout=timeout)
        assert code == 0, (root / f"w{i}.log").read_text() if (root / f"w{i}.log").exists() else code


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="shared", storage=url).get_trials()


def _wait_for(url: str, predicate, timeout: float = 600) -> list[optuna.trial.FrozenTrial]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            trials = _trials(url)
            if predicate(trials):
                return trials
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the study")


def _assert_complete_plan(url: str, planned: int = 4) -> list[optuna.trial.FrozenTrial]:
    trials = _trials(url)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    slots = {(t.params["depth"], t.params["repeat"]) for t in finished}
    assert len(finished) == planned and len(slots) == planned
    return trials


def test_four_workers_complete_exactly_the_plan(tmp_path: Path, databases: list[str]) -> None:
    root, url = _setup(tmp_path, databases)
    procs = [_worker(root, f"w{i}.log") for i in range(4)]
    _wait_all(procs, root)
    trials = _assert_complete_plan(url)
    assert len(trials) == 4  # exactly the budget: no surplus trials from racing workers
    client = MlflowClient(tracking_uri=databases[1])
    experiment = client.get_experiment_by_name("shared")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("neurosearch.kind") == "study"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == sorted(t.number for t in trials)
    assert all(r.info.status == "FINISHED" for r in children)
    assert parents[0].data.tags["optuna.storage"] == url  # no password in this URL: nothing to mask


def test_workers_share_successive_halving_and_settled_depths(tmp_path: Path, databases: list[str]) -> None:
    """The search as shipped (successive halving within each depth, settled depths) on
    two workers: four planned trials per depth, none run twice. The tiny networks fall
    short of 0.999 on their whole validation interval, so once two trials of a depth have
    finished the depth is settled, by whichever worker finished the second, and the
    depth's slots claimed after that are skipped on both workers."""
    extra_study = "stop_settled_depths = true\nsettle_after = 2\n"
    root, url = _setup(tmp_path, databases)
    text = ((root / "search.toml").read_text().replace("trials_per_depth = 2", "trials_per_depth = 4\n" + extra_study)
            .replace('pruning = "none"', 'pruning = "depth-halving"\nhalving_factor = 2\nprune_warmup_epochs = 1'))
    (root / "search.toml").write_text(text)
    procs = [_worker(root, f"w{i}.log") for i in range(2)]
    _wait_all(procs, root)
    trials = _trials(url)
    slots = [(t.params["depth"], t.params["repeat"]) for t in trials]
    assert sorted(slots) == [(d, r) for d in (1, 2) for r in range(4)]  # every planned slot, once
    study = optuna.load_study(study_name="shared", storage=url)
    for depth in (1, 2):
        own = [t for t in trials if t.params["depth"] == depth]
        trained = [t for t in own if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        skipped = [t for t in own if t.state == TrialState.FAIL]
        assert len(trained) + len(skipped) == 4 and len(trained) >= 2 and skipped, [t.state for t in own]
        assert all(f"tcn depth {depth} is settled: " in t.user_attrs["skip_reason"] and "wholly below 0.999" in t.user_attrs["skip_reason"] for t in skipped)
        settled = study.user_attrs[f"settled:tcn:{depth}"]
        assert settled["verdict"] == "below" and settled["valid"][2] < 0.999 and settled["finished"] >= 2
        assert f"confirmation:tcn:{depth}" in study.user_attrs  # still scored on test at the depth's end
    workers = {t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs}
    assert len(workers) == 2  # both did training work
    assert all(t.user_attrs.get("prune_reason", "").endswith("(successive halving)")
               for t in trials if t.state == TrialState.PRUNED)


def _set_up_when_all_are_ready(values: dict, barrier, results) -> None:
    """One of several workers started together: open the stores, wait for the others,
    then all set the study up at the same instant."""
    from neurosearch.search.config import load_config
    from neurosearch.search.runner import set_up_study
    from neurosearch.search.study.attrs import ATTR_DATASET_HASH, ATTR_DATASET_PATH
    from neurosearch.search.study.workspace import open_storage
    from neurosearch.search.tracking.tracker import Tracker

    config = load_config(None, values=values)
    storage = open_storage(config)
    tracker = Tracker(config.tracking.uri, config.tracking.artifacts, config.experiment_name)
    barrier.wait(timeout=300)
    study, created, run_id, added = set_up_study(
        config, storage, tracker, {ATTR_DATASET_HASH: "0" * 16, ATTR_DATASET_PATH: "/shared/dataset"})
    results.put((created, run_id, added))


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_workers_set_up_together_make_one_plan_and_one_study_run(
    tmp_path: Path, databases: list[str], backend: str
) -> None:
    """Six workers reach the set-up at the same instant (a barrier): one creates the study,
    its MLflow run and its plan; the others join what it made (the set-up lock)."""
    import multiprocessing

    optuna_url, mlflow_url = databases
    if backend == "sqlite":
        optuna_url, mlflow_url = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    values = {"study.name": "race", "study.storage": optuna_url, "study.work_dir": str(tmp_path / "work"),
              "study.trials_per_depth": 3, "tracking.uri": mlflow_url,
              "tracking.artifacts": str(tmp_path / "artifacts"), "spaces.tcn.depths": [1, 2, 3, 4]}
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [context.Process(target=_set_up_when_all_are_ready, args=(values, barrier, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sum(created for created, _, _ in outcomes) == 1
    assert sum(added for _, _, added in outcomes) == 12 == len(optuna.load_study(study_name="race", storage=optuna_url).trials)
    assert len({run_id for _, run_id, _ in outcomes}) == 1
    client = MlflowClient(tracking_uri=mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert [r.info.run_id for r in runs] == [outcomes[0][1]]


def test_killed_worker_trial_is_retried_from_its_checkpoint(tmp_path: Path, databases: list[str]) -> None:
    root, url = _setup(tmp_path, databases, "")
    text = (root / "search.toml").read_text().replace("steps_per_epoch = 3", "steps_per_epoch = 12")
    (root / "search.toml").write_text(text)
    victim = _worker(root, "w0.log")
    trials = _wait_for(url, lambda ts: any(t.state == TrialState.RUNNING and t.intermediate_values for t in ts))
    running = next(t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values)
    assert running.user_attrs["worker"].endswith(f":{victim.pid}")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = _worker(root, "w1.log")
    assert survivor.wait(timeout=900) == 0, (root / "w1.log").read_text()
    trials = _assert_complete_plan(url)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [running.number]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == running.number)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_epochs"] >= 1
    client = MlflowClient(tracking_uri=databases[1])
    dead_run = client.get_run(running.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED"
    retry_run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert retry_run.data.tags["retry_of_run"] == dead_run.info.run_id


def test_stop_all_workers_then_resume_with_one(tmp_path: Path, databases: list[str]) -> None:
    root, url = _setup(tmp_path, databases)
    procs = [_worker(root, f"w{i}.log") for i in range(2)]
    _wait_for(url, lambda ts: sum(t.state == TrialState.COMPLETE for t in ts) >= 1)
    for proc in procs:
        os.killpg(proc.pid, signal.SIGINT)
    for proc in procs:
        assert proc.wait(timeout=120) in (0, 130)
    before = [t for t in _trials(url) if t.state == TrialState.COMPLETE]
    resumed = _worker(root, "w9.log")
    assert resumed.wait(timeout=900) == 0, (root / "w9.log").read_text()
    trials = _assert_complete_plan(url)
    assert {t.number for t in before} <= {t.number for t in trials if t.state == TrialState.COMPLETE}


def test_a_session_used_again_after_a_restart_cut_it_is_a_lost_connection(postgres, databases: list[str]) -> None:
    """What the restart test below can meet by chance, made to happen: the server ends a
    session's connection, and the session is used again while handling that error (as
    Optuna's get_trials falls back to a slower query). The PendingRollbackError this
    raises, wrapped in Optuna's StorageInternalError, must be waited out like the
    first error, not crash the worker."""
    import sqlalchemy
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError, PendingRollbackError
    from sqlalchemy.orm import Session

    from neurosearch.search.study.workspace import waiting_can_mend

    engine = sqlalchemy.create_engine(databases[0], poolclass=sqlalchemy.pool.NullPool)
    with Session(engine) as session:
        pid = session.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar()
        postgres.execute("SELECT pg_terminate_backend(%s)", (pid,))  # what a restart does to every session
        with pytest.raises(PendingRollbackError) as reused:
            try:
                session.execute(sqlalchemy.text("SELECT 1"))
            except OperationalError:
                session.execute(sqlalchemy.text("SELECT 1"))
    engine.dispose()
    with pytest.raises(StorageInternalError) as wrapped:
        raise StorageInternalError("An exception is raised during the commit.") from reused.value
    assert waiting_can_mend(reused.value) and waiting_can_mend(wrapped.value)


@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None or os.geteuid() != 0, reason="needs pg_ctlcluster as root")
def test_postgres_restart_mid_study(tmp_path: Path, databases: list[str]) -> None:
    root, url = _setup(tmp_path, databases)
    text = (root / "search.toml").read_text().replace("steps_per_epoch = 3", "steps_per_epoch = 10")
    (root / "search.toml").write_text(text)
    procs = [_worker(root, f"w{i}.log") for i in range(2)]
    _wait_for(url, lambda ts: any(t.intermediate_values for t in ts))
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120)
    _wait_all(procs, root)
    _assert_complete_plan(url)
