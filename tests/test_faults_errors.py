"""Hostile input through the real command line: each fault is one line and exit code 2,
never a traceback, and whatever can be checked in seconds fails before the simulation
(no dataset folder, no Optuna study afterwards). docs/FAULTS.md lists these faults."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch
from sqlalchemy.exc import OperationalError

from neurosearch.search.cli import main
from neurosearch.search.config import Config, StudySection
from neurosearch.search.errors import UserError
from neurosearch.search.study.workspace import study_summaries, waiting_can_mend

#: nothing listens on port 1: a database that is simply not there
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/x"


def neurosearch(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The console script in its own process."""
    return subprocess.run([sys.executable, "-m", "neurosearch.search.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """The console script's ``main`` in this process (real stores and files, without paying
    the imports again for every fault): returns what a process would have returned."""

    def invoke(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["neurosearch", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:  # any other exception is the traceback a user would see
            main()
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, exit_.value.code, out, err)

    return invoke


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one line the user gets (and nothing else), after checking exit code 2."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


@pytest.fixture
def study_dir(tmp_path: Path, tiny_toml) -> Path:
    (tmp_path / "search.toml").write_text(tiny_toml())
    return tmp_path


def nothing_spent(root: Path) -> None:
    """The preflight failed before the simulation and before the study was created."""
    assert not (root / "state" / "datasets").exists()
    db = root / "state" / "optuna.db"
    if db.exists():
        assert optuna.get_all_study_summaries(storage=f"sqlite:///{db}") == []


@pytest.fixture
def read_only(tmp_path: Path):
    """A folder no one can write to: a read-only tmpfs as root (CI runs as root, where the
    mode bits do not stop writes), mode 0555 otherwise."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("url", [UNREACHABLE_PG, "nonsense://"])
@pytest.mark.parametrize("command", ["report", "studies", "export"])
def test_bad_or_unreachable_storage_is_one_line(cli, tmp_path: Path, study_dir: Path, command: str, url: str) -> None:
    # report and studies in the README's "from anywhere" form (no config); export needs the config
    cwd = study_dir if command == "export" else tmp_path / "anywhere"
    cwd.mkdir(exist_ok=True)
    extra = [] if command == "studies" else ["--study", "tiny"]
    line = one_error_line(cli(command, "--storage", url, *extra, cwd=cwd))
    assert "study storage" in line and url.split("/")[0] in line


@pytest.mark.parametrize("uri", ["postgresql://postgres@127.0.0.1:1/mlflow", "http://127.0.0.1:1"])
def test_unreachable_tracking_store_fails_before_the_simulation(cli, study_dir: Path, uri: str) -> None:
    line = one_error_line(cli("run", "--no-progress", "--set", f'tracking.uri="{uri}"', cwd=study_dir))
    assert f"cannot reach the tracking store {uri}" in line and "refused" in line
    nothing_spent(study_dir)


@pytest.mark.parametrize("setting", ["study.work_dir", "tracking.uri"])
def test_read_only_folder_fails_before_the_simulation(cli, study_dir: Path, read_only: Path, setting: str) -> None:
    value = read_only / "work" if setting == "study.work_dir" else f"sqlite:///{read_only}/mlflow.db"
    line = one_error_line(cli("run", "--no-progress", "--set", f'{setting}="{value}"', cwd=study_dir))
    assert str(read_only) in line and "not writable" in line
    nothing_spent(study_dir)


def test_json_into_a_missing_folder_fails_before_the_study(cli, study_dir: Path) -> None:
    line = one_error_line(cli("run", "--no-progress", "--json", "missing/dir/out.json", cwd=study_dir))
    assert "missing/dir" in line and "does not exist" in line
    nothing_spent(study_dir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda is a valid device here")
def test_cuda_without_a_gpu_fails_before_the_simulation(cli, study_dir: Path) -> None:
    line = one_error_line(cli("run", "--no-progress", "--set", 'training.device="cuda"', cwd=study_dir))
    assert "training.device" in line and "no CUDA GPU" in line
    nothing_spent(study_dir)


def test_a_message_with_brackets_prints_literally(tmp_path: Path) -> None:
    # in its own process: the console script end to end. The message names this path; as rich markup "[simulator]" would vanish and "[/x]" crash the printer
    line = one_error_line(neurosearch("simulate", "--config", "[simulator] [/x].toml", cwd=tmp_path))
    assert line == "error: config file [simulator] [/x].toml does not exist"


def test_a_read_only_file_system_underneath_is_one_line(cli, study_dir: Path, read_only: Path) -> None:
    # the mechanism cache cannot be written: no check of ours names it, main's last resort does
    cache = read_only / "cache"
    line = one_error_line(cli("simulate", "--no-progress", cwd=study_dir, env={"NEUROSEARCH_CACHE": str(cache)}))
    assert str(cache) in line
    assert not any((study_dir / "state" / "datasets").glob("*/shard-*"))


def test_a_storage_that_fails_after_opening_is_one_line(tmp_path: Path) -> None:
    # a storage whose tables Optuna can no longer read: the failure surfaces on the first
    # query, after the storage opened (as when the database goes away mid-report)
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    optuna.create_study(study_name="a", storage=url)
    db = sqlite3.connect(tmp_path / "broken.db")
    db.execute("ALTER TABLE studies RENAME COLUMN study_name TO renamed")
    db.commit()
    db.close()
    config = Config(study=StudySection(storage=url))  # the default reconnect_s: a broken schema is not waited out
    with pytest.raises(UserError, match=r"^cannot read the study storage sqlite:///.*broken\.db: no such column"):
        study_summaries(config)
    with sqlalchemy.create_engine(url).connect() as connection:
        with pytest.raises(OperationalError) as broken:
            connection.execute(sqlalchemy.text("SELECT study_name FROM studies"))
    assert not waiting_can_mend(broken.value)
    with pytest.raises(OperationalError) as lost:  # nothing listens there: a lost connection, waited out
        sqlalchemy.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/x").connect()
    assert waiting_can_mend(lost.value)
