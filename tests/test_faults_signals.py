"""Faults with real processes, signals, file systems and databases: Ctrl-C and SIGTERM
during `simulate` and `run`, a full disk during simulation and training, a transient
trial failure retried by a rerun, and two fresh runs racing to create one SQLite study."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from neurosearch.search.config import load_config
from neurosearch.search.signals import raise_on_sigterm
from neurosearch.search.study.plan import TrialFailed, enqueue_plan, open_study, run_worker, suggest_slot, unfinished
from neurosearch.search.study.workspace import open_storage
from neurosearch.simulators import storage

CLI = [sys.executable, "-m", "neurosearch.search.cli"]


def neurosearch(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(predicate, timeout: float = 600, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def manifest_of(root: Path) -> dict:
    return json.loads(next((root / "state" / "datasets").glob("*/manifest.json")).read_text())


def shards_on_disk(root: Path) -> int:
    return len(list((root / "state" / "datasets").glob("*/shards/*.npz")))


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def watch_until_shards(proc: subprocess.Popen, root: Path, shards: int) -> list[psutil.Process]:
    """Wait until ``simulate`` has written ``shards`` shards (or ended); every process it
    started meanwhile (its NEURON pool workers)."""
    seen: list[psutil.Process] = []

    def enough() -> bool:
        seen.extend(c for c in psutil.Process(proc.pid).children(recursive=True) if c not in seen)
        return proc.poll() is not None or shards_on_disk(root) >= shards

    wait_until(enough, what=f"{shards} shard(s)")
    return seen


def wait_until_gone(processes: list[psutil.Process], what: str) -> None:
    wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes),
               timeout=30, what=f"{what} to exit")


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount a small real file system (tmpfs of the given size) at a folder; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here to fill it (needs root/CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)  # unmounted already: fine


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, tiny_toml) -> Path:
    """The tiny study's dataset, simulated once; tests copy it into their own work_dir."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "search.toml").write_text(tiny_toml())
    made = neurosearch("simulate", "--no-progress", cwd=root)
    assert made.returncode == 0, made.stdout + made.stderr
    return root / "state" / "datasets"


def study_root(tmp_path: Path, text: str, datasets: Path | None) -> Path:
    (tmp_path / "search.toml").write_text(text)
    if datasets is not None:
        shutil.copytree(datasets, tmp_path / "state" / "datasets")
    return tmp_path


# --------------------------------------------------------------------------- simulate


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_simulate_keeps_shards_and_leaves_no_workers(tmp_path: Path, tiny_toml, signum, code) -> None:
    """The signal goes to the main process alone (as `kill` or a batch scheduler sends it)."""
    root = study_root(tmp_path, tiny_toml(), None)
    proc = start("simulate", "--no-progress", "--set", "simulator.n_simulations=16", cwd=root)
    try:
        workers = watch_until_shards(proc, root, 2)
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, output
    assert "interrupted: finished work is kept" in output and "Traceback" not in output, output
    assert workers, "the NEURON pool workers should have been seen"
    wait_until_gone(workers, "the pool workers")
    manifest = manifest_of(root)
    kept = sum(entry is not None for entry in manifest["shards"])
    assert manifest["status"] == "incomplete" and 2 <= kept < 16
    assert kept == shards_on_disk(root)  # every shard on disk is in the manifest, and the other way round
    assert not leftovers(root)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_between_shard_and_record_waits_until_both_are_written(tmp_path: Path, signum) -> None:
    """The window the test above can hit by chance (a shard on disk, its record not yet
    rewritten), hit on purpose: the signal is raised inside it and must land after it."""
    previous = signal.getsignal(signal.SIGTERM)
    raise_on_sigterm()  # as the CLI does
    written: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with storage.signals_held():
                # sent from another thread, as the pool's manager thread exists in `simulate`:
                # the kernel may hand a process-wide signal to any thread that accepts it
                sender = threading.Thread(target=os.kill, args=(os.getpid(), signum))
                sender.start()
                sender.join()
                time.sleep(0.1)
                storage.write_atomic(tmp_path / "sim_00001.npz", b"shard")
                written.append("shard")
                storage.write_record(tmp_path / "manifest.json", {"shards": ["sim_00001.npz"]})
                written.append("record")
            written.append("after the block")  # never: the held signal is delivered on leaving it
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert written == ["shard", "record"]
    assert storage.read_record(tmp_path / "manifest.json") == {"shards": ["sim_00001.npz"]}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers are back


def _handles(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler of its own for ``signum`` (its SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signum - 1) & 1)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_start_up_ends_the_command_as_one_later_does(tmp_path: Path, tiny_toml, signum, code) -> None:
    """Sent the moment the command's first handler is in place, while it still imports its
    libraries: the same line and exit code as a signal mid-run (before: a traceback from
    inside an import for SIGINT, a silent death for SIGTERM)."""
    root = study_root(tmp_path, tiny_toml(), None)
    proc = start("run", "--no-progress", cwd=root)
    try:
        deadline = time.monotonic() + 120
        while not _handles(proc.pid, signal.SIGTERM) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)  # Python handles SIGINT from its first instant; SIGTERM only once ours is set
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, output
    assert output.strip().splitlines()[-1] == "interrupted: finished work is kept; run the same command again to resume."
    assert "Traceback" not in output and "Aborted" not in output, output
    assert not (root / "state" / "datasets").exists()  # stopped before any work


def test_workers_exit_when_simulate_is_killed_outright(tmp_path: Path, tiny_toml) -> None:
    """SIGKILL leaves the parent no chance to stop its pool: the workers notice it is gone."""
    root = study_root(tmp_path, tiny_toml(), None)
    proc = start("simulate", "--no-progress", "--set", "simulator.n_simulations=16", cwd=root)
    try:
        workers = watch_until_shards(proc, root, 1)
        assert proc.poll() is None and workers
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # the orphans hold the pipe: never read it to its end
    wait_until_gone([w for w in workers if w.is_running()], "the orphaned pool workers")


@pytest.mark.parametrize("part", [None, "1/2"])
def test_disk_full_during_simulate_is_one_line_and_keeps_shards(tmp_path: Path, tiny_toml, tmpfs, part) -> None:
    """A 160 kB file system holds the record and a few 45 kB shards, then is full; a part
    (``--part``) counts what its own record keeps."""
    root = study_root(tmp_path, tiny_toml(), None)
    tmpfs(root / "state", "160k")
    result = neurosearch("simulate", "--no-progress", "--set", "simulator.n_simulations=12",
                         *(["--part", part] if part else []), cwd=root)
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stdout.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "the file system holding it is full" in line and str(root / "state" / "datasets") in line
    folder = next((root / "state" / "datasets").glob("*"))
    record = manifest_of(root) if part is None else json.loads((folder / "parts" / "part-1-of-2.json").read_text())
    shards = [entry for entry in record["shards"] if entry is not None]
    assert shards and f"the {len(shards)} finished simulation(s) are kept" in line
    assert all((folder / entry["file"]).is_file() for entry in shards)  # a shard whose manifest update failed
    assert not leftovers(root)                                          # is not counted; it is redone on resume


# --------------------------------------------------------------------------- run


@pytest.mark.parametrize("signum, code, named", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_a_signal_during_training_hands_the_trial_back_and_a_rerun_finishes(
    tmp_path: Path, tiny_toml, simulated: Path, signum: int, code: int, named: str
) -> None:
    root = study_root(tmp_path, tiny_toml(epochs=4, steps_per_epoch=30), simulated)
    storage = f"sqlite:///{root}/state/optuna.db"
    proc = start("run", "--no-progress", cwd=root)
    study_files = root / "state" / "studies" / "tiny"  # then <uid>/checkpoints/
    try:  # a file, not the database: opening it from here would race the run's own creation of it
        wait_until(lambda: proc.poll() is not None or any(study_files.glob("*/checkpoints/trial-0.pt")),
                   what="the first epoch's checkpoint")
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, output
    assert "run the same command again to resume" in output and "Traceback" not in output, output
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 1 and f"interrupted ({named})" in interrupted[0].user_attrs["fail_reason"]
    # handed back at once: its retry waits now, so a rerun need not wait out grace_s
    assert [t for t in trials if t.state == TrialState.WAITING and t.system_attrs.get("failed_trial") == interrupted[0].number]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert list(study_files.glob(f"*/checkpoints/trial-{interrupted[0].number}.pt"))

    again = neurosearch("run", "--no-progress", cwd=root)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == interrupted[0].number]
    assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry[0].user_attrs["resumed_epochs"] >= 1


def test_disk_full_during_training_is_retried_by_the_rerun(tmp_path: Path, tiny_toml, simulated: Path, tmpfs) -> None:
    """Checkpoints on a full file system: every trial fails with ENOSPC, the run says so and
    exits 2; with space again the same command finishes the plan from the retried trials."""
    root = study_root(tmp_path, tiny_toml(epochs=1, steps_per_epoch=2), simulated)
    checkpoints = tmpfs(root / "state" / "studies" / "tiny", "4k")  # the study's files: <uid>/checkpoints/…
    full = neurosearch("run", "--no-progress", cwd=root)
    assert full.returncode == 2, full.stdout + full.stderr
    last = full.stdout.strip().splitlines()[-1]
    print("disk full during training:", last)
    assert "wait to run again" in last and "No space left on device" in last, full.stdout
    assert not leftovers(root)
    storage = f"sqlite:///{root}/state/optuna.db"
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert sorted(t.state for t in trials) == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2

    subprocess.run(["umount", "-l", str(checkpoints)], check=True)  # the disk has room again
    again = neurosearch("run", "--no-progress", cwd=root)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sorted(t.params["depth"] for t in done) == [1, 2]
    assert all(t.system_attrs.get("failed_trial") is not None for t in done)  # the retries, same params
    assert not leftovers(root)


def _finished_trials(database: Path) -> int:
    """Finished trials in an SQLite study file, read without creating or writing anything."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system is full."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_disk_full_under_the_study_storage_mid_run_is_one_line_and_keeps_finished_trials(
    tmp_path: Path, tiny_toml, simulated: Path, tmpfs
) -> None:
    """The SQLite study file's disk fills after the first trial: the run waits it out for
    study.reconnect_s (a full disk can be mended), then ends in one line, exit 2; the
    finished trial stays, and with space again the same command finishes the plan."""
    text = tiny_toml(epochs=2, steps_per_epoch=30).replace('storage = "sqlite:///state/optuna.db"',
                                                          'storage = "sqlite:///db/optuna.db"')
    root = study_root(tmp_path, text, simulated)
    db = tmpfs(root / "db", "1m")
    proc = start("run", "--no-progress", "--set", "study.reconnect_s=4", cwd=root)
    try:
        wait_until(lambda: proc.poll() is not None or _finished_trials(db / "optuna.db") >= 1, what="the first trial")
        filler = _fill(db)
        output, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 2 and "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: the study storage sqlite:///") and "database or disk is full" in last, output
    assert "stayed so for 4 s; its 1 finished trial(s) are kept" in last and "free some space" in last, last
    # the "retrying for up to 4 s" warning is not asserted: when the heartbeat thread meets the full
    # disk first (it swallows the error), the main thread's call can fail past the deadline unwarned
    first = [t for t in optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}/optuna.db").trials
             if t.state == TrialState.COMPLETE]

    filler.unlink()
    again = neurosearch("run", "--no-progress", cwd=root)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}/optuna.db").trials
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sorted(t.params["depth"] for t in done) == [1, 2]
    assert [(t.number, t.value) for t in first] == [(t.number, t.value) for t in done if t.number == first[0].number]


def test_two_fresh_runs_on_one_new_sqlite_file_both_succeed(tmp_path: Path, tiny_toml, simulated: Path) -> None:
    root = study_root(tmp_path, tiny_toml(epochs=1, steps_per_epoch=2), simulated)
    procs = [start("run", "--no-progress", cwd=root) for _ in range(2)]
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/state/optuna.db").trials
    assert sorted(t.params["depth"] for t in trials) == [1, 2]  # exactly the plan, once
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


# --------------------------------------------------------------------------- the retry rule


def test_transient_failures_are_requeued_for_a_rerun_and_the_networks_own_are_not(tmp_path: Path) -> None:
    config = load_config(None, [f'study.storage="sqlite:///{tmp_path}/optuna.db"', "study.heartbeat_s=1",
                                "study.grace_s=3", "study.max_retry=1", "study.trials_per_depth=1",
                                "spaces.tcn.depths=[1, 2, 3]"])
    study, _ = open_study(config, open_storage(config), {"dataset_hash": "abc", "dataset_path": "/x"})
    enqueue_plan(study, config)
    disk_full = True

    def objective(trial: optuna.Trial) -> float:
        _, depth = suggest_slot(trial, ["tcn"])
        if depth == 1 and disk_full:
            raise OSError(errno.ENOSPC, "No space left on device")
        if depth == 2:
            raise TrialFailed("receptive field larger than burn_in_ms")
        return 0.9

    assert run_worker(study, objective, poll_s=0.1) == 3  # the retry of depth 1 is left for a rerun
    states = {t.number: t.state for t in study.trials}
    assert list(states.values()).count(TrialState.WAITING) == 1
    assert "wait to run again" in unfinished(study) and "No space left on device" in unfinished(study)

    assert run_worker(study, objective, poll_s=0.1) == 1  # the rerun: still full, retried once more (max_retry=1)
    assert run_worker(study, objective, poll_s=0.1) == 0  # retries used up: nothing waits
    depth1 = [t for t in study.trials if t.params["depth"] == 1]
    assert [t.state for t in depth1] == [TrialState.FAIL, TrialState.FAIL]
    depth2 = [t for t in study.trials if t.params["depth"] == 2]
    assert [t.state for t in depth2] == [TrialState.FAIL]  # the network's own failure: never retried
    assert unfinished(study) is None  # depth 3 finished: a result exists

    everything_fails = load_config(None, [f'study.storage="sqlite:///{tmp_path}/other.db"', "study.name=other",
                                          "study.trials_per_depth=1", "spaces.tcn.depths=[2]"])
    other, _ = open_study(everything_fails, open_storage(everything_fails), {"dataset_hash": "abc", "dataset_path": "/x"})
    enqueue_plan(other, everything_fails)
    run_worker(other, objective, poll_s=0.1)
    assert unfinished(other) == "no trial finished: all 1 failed (receptive field larger than burn_in_ms)"
