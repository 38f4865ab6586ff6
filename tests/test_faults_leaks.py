"""Hostile inputs (issue 10, part B): no password leaks, a study's files are its own,
paths resolve against the config's folder, bad values end in one line (exit code 2).

Real `neurosearch` processes, real SQLite and PostgreSQL, real MLflow stores, real files.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
import torch
from optuna.trial import TrialState

from neurosearch.search.config import load_config
from neurosearch.search.errors import UserError
from neurosearch.search.study.attrs import ATTR_RESUMED_EPOCHS
from neurosearch.search.study.workspace import Workspace, load_model, study_uid
from neurosearch.search.training.weights import load_weights
from neurosearch.simulators.storage import write_atomic


def neurosearch(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurosearch.search.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single line a user mistake ends in (exit code 2, no traceback)."""
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    return out


def tiny(tiny_toml, name: str, work_dir: Path) -> str:
    """The conftest's tiny study cut to one trial of one depth, with no learning curve,
    its files under ``work_dir`` (absolute: tests share one dataset)."""
    text = tiny_toml(name=name, epochs=1, steps_per_epoch=2)
    text = text.replace('work_dir = "state"', f"work_dir = '{work_dir}'\nlearning_curve = false")
    text = text.replace("threshold = 0.5", "threshold = 0.5\nbootstrap = 100")
    return text.replace("depths = [1, 2]", "depths = [1]")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_toml) -> Path:
    """A work folder whose dataset cache holds the tiny dataset (simulated once here)."""
    root = tmp_path_factory.mktemp("shared")
    (root / "search.toml").write_text(tiny(tiny_toml, "seed", root / "state"))
    made = neurosearch("simulate", "--no-progress", cwd=root)
    assert made.returncode == 0, made.stdout + made.stderr
    return root / "state"


# --------------------------------------------------------------------------- options and names


def test_storage_option_is_taken_as_given(tmp_path: Path, tiny_toml) -> None:
    (tmp_path / "search.toml").write_text(tiny_toml())
    (tmp_path / "a\\tb.db").write_bytes(b"")  # an empty file is an empty SQLite database
    listed = neurosearch("studies", "--storage", r"sqlite:///a\tb.db", cwd=tmp_path)
    # the backslash kept, not a TAB: the file found, not a new one made
    assert listed.returncode == 0 and not (tmp_path / "a\tb.db").exists(), listed.stdout + listed.stderr


@pytest.mark.parametrize("name", ["../../escaped", "x" * 600])
def test_study_name_is_validated(tmp_path: Path, tiny_toml, name: str) -> None:
    (tmp_path / "search.toml").write_text(tiny_toml())
    line = one_line_error(neurosearch("run", "--no-progress", "--study", name, cwd=tmp_path))
    assert "study.name" in line and "letters, digits" in line
    assert len(line) < 400  # a 600-character name is not printed whole
    assert not list(tmp_path.parent.rglob("escaped")) and not (tmp_path / "state").exists()
    for other in ('quote"d', ".hidden", "a/b", "", "x" * 101):
        with pytest.raises(UserError, match="study.name"):
            load_config(tmp_path / "search.toml", values={"study.name": other})
    assert load_config(None, values={"study.name": "A-1_b.2" + "x" * 93}).study.name.startswith("A-1_b.2")
    with pytest.raises(UserError, match="tracking.experiment"):  # joined into the artifact path too
        load_config(None, values={"tracking.experiment": "../../escaped"})
    assert load_config(None, values={"tracking.experiment": "nmda-1"}).experiment_name == "nmda-1"


def test_depth_above_the_maximum_is_refused_at_load(tmp_path: Path, tiny_toml) -> None:
    (tmp_path / "search.toml").write_text(tiny_toml().replace("depths = [1, 2]", "depths = [1, 65]"))
    line = one_line_error(neurosearch("simulate", "--no-progress", cwd=tmp_path))
    assert "spaces.tcn.depths" in line and "supported maximum of 64: [65]" in line


# --------------------------------------------------------------------------- files


def test_files_honour_the_umask(tmp_path: Path, shared: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a", b"x")
        os.umask(0o022)
        write_atomic(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o644
    # the dataset a real `neurosearch simulate` wrote: shards and manifest as readable as the umask allows
    files = list(shared.glob("datasets/*/shards/*.npz")) + list(shared.glob("datasets/*/manifest.json"))
    assert len(files) > 6
    assert {f.stat().st_mode & 0o777 for f in files} == {0o666 & ~old}


class _Planted:
    """Unpickling this creates a file: what a hostile checkpoint could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_file_that_is_more_than_weights_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    planted = tmp_path / "trial-0.pt"
    torch.save({"model": {}, "extra": _Planted(marker)}, planted)
    for load in (load_weights, load_model):
        with pytest.raises(UserError) as refused:
            load(planted)
        assert str(refused.value).startswith(f"refusing to load {planted}: it holds more than weights")
        assert len(str(refused.value).splitlines()) == 1
    assert not marker.exists()


def test_a_new_study_under_an_old_name_trains_afresh(tmp_path: Path, shared: Path, tiny_toml) -> None:
    """The old storage moved away, the same study name: nothing of the old study's files is used."""
    (tmp_path / "search.toml").write_text(tiny(tiny_toml, "again", shared))
    first = neurosearch("run", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    url = f"sqlite:///{tmp_path}/state/optuna.db"
    old = optuna.load_study(study_name="again", storage=url)
    old_uid, (old_trial,) = study_uid(old), old.trials
    assert old_uid and old_trial.state == TrialState.COMPLETE
    old_checkpoint = Workspace(shared, "again", old_uid).checkpoint(old_trial)
    assert old_checkpoint.is_file() and load_weights(old_checkpoint)["history"]  # what it saves loads as weights

    (tmp_path / "state" / "optuna.db").rename(tmp_path / "moved.db")
    second = neurosearch("run", "--no-progress", "--set", "training.learning_rate=[0.05, 0.05]", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    new = optuna.load_study(study_name="again", storage=url)
    (trial,) = new.trials
    assert study_uid(new) not in (None, old_uid)
    assert trial.state == TrialState.COMPLETE and trial.user_attrs[ATTR_RESUMED_EPOCHS] == 0
    assert trial.params["lr"] == pytest.approx(0.05)
    assert Workspace(shared, "again", study_uid(new)).checkpoint(trial).is_file()

    # a trained-model file swapped for one that runs code: `export` refuses it in one line
    marker = tmp_path / "code-ran"
    model = Workspace(shared, "again", study_uid(new)).model(trial.number)
    torch.save({"spec": {}, "extra": _Planted(marker)}, model)
    line = one_line_error(neurosearch("export", "--trial", str(trial.number), cwd=tmp_path))
    assert "refusing to load" in line and not marker.exists()


def test_custom_cell_paths_resolve_against_the_config_folder(tmp_path: Path, make_custom_cell) -> None:
    """`simulate -c ../cust/custom.toml` from a folder that has a cell of its own."""
    cust = make_custom_cell(tmp_path / "cust", length_um=250)
    make_custom_cell(tmp_path / "other", length_um=40)  # same names, another cell
    (tmp_path / "cust" / "custom.toml").write_text("""
[study]
work_dir = "work"
[simulator]
model = "custom"
n_simulations = 3
duration_ms = 400
discard_ms = 100
processes = 1
split = [0.34, 0.33, 0.33]
[simulator.custom]
builder = "cell.py:build"
mechanisms = "mods"
morphology = "morph.txt"
[simulator.stimulus]
rate_scale = [1.0, 1.0]
[training]
window_ms = 200
burn_in_ms = 50
""")
    made = neurosearch("simulate", "--no-progress", "-c", "../cust/custom.toml", cwd=tmp_path / "other")
    assert made.returncode == 0, made.stdout + made.stderr
    (manifest,) = (tmp_path / "cust" / "work" / "datasets").glob("*/manifest.json")
    digest = json.loads(manifest.read_text())["custom_model"]
    assert digest["morphology_sha256"] == hashlib.sha256(cust["morphology"].read_bytes()).hexdigest()
    assert not (tmp_path / "other" / "work").exists()


# --------------------------------------------------------------------------- passwords (PostgreSQL)

@pytest.fixture
def role(postgres):
    """A real role with a password holding \\ " @ : and a space (trust auth does not check it, but
    every URL carries it) and two databases it owns; (user, password, token, db names)."""
    tag = uuid.uuid4().hex[:8]
    user, token = f"ns_leak_{tag}", f"tok{uuid.uuid4().hex}"
    password = f'pw\\x "y@z:{token}'
    postgres.role(user, password)
    names = [postgres.database(f"ns_leak_{kind}", owner=user).rsplit("/", 1)[1] for kind in ("optuna", "mlflow")]
    return user, password, token, names


def _url(user: str, password: str, database: str, port: str = "5432") -> str:
    """``\\``, ``"`` and the space as typed (raw); ``@`` and ``:`` percent-encoded, as a URL needs them."""
    return f"postgresql://{user}:{quote(password, safe=chr(92) + chr(34) + ' ')}@127.0.0.1:{port}/{database}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.postgres
def test_a_password_appears_nowhere(tmp_path: Path, shared: Path, tiny_toml, role, line_reader) -> None:
    import psutil

    from mlflow import MlflowClient

    user, password, token, (optuna_db, mlflow_db) = role
    storage, tracking = _url(user, password, optuna_db), _url(user, password, mlflow_db)
    assert "\\" in storage and '"' in storage and " " in storage and token in storage
    text = tiny(tiny_toml, "leak", shared).replace('uri = "sqlite:///tracking/mlflow.db"', f"uri = '{tracking}'")
    (tmp_path / "search.toml").write_text(text)

    ran = neurosearch("run", "--no-progress", "--storage", storage, cwd=tmp_path, timeout=900)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert token not in ran.stdout + ran.stderr
    client = MlflowClient(tracking_uri=f"postgresql://postgres@127.0.0.1:5432/{mlflow_db}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    kinds = sorted(run.data.tags.get("neurosearch.kind") for run in runs)
    assert kinds == ["study", "trial"]
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not [v for v in values if token in v], run.info.run_name
    study_params = next(r for r in runs if r.data.tags["neurosearch.kind"] == "study").data.params
    assert study_params["tracking.uri"] == f"postgresql://{user}:***@127.0.0.1:5432/{mlflow_db}"
    assert study_params["study.storage"] == f"postgresql://{user}:***@127.0.0.1:5432/{optuna_db}"

    # URLs that do not parse (a port "abc") or name no database: one line, the password masked
    bad_port = _url(user, password, optuna_db, port="abc")
    for args, cwd in (
        (("report", "--storage", bad_port, "--study", "leak"), tmp_path / "elsewhere"),  # no config: the URL as given
        (("run", "--no-progress", "--storage", bad_port), tmp_path),
        (("report", "--storage", _url(user, password, "no_such_db")), tmp_path),
    ):
        cwd.mkdir(exist_ok=True)
        line = one_line_error(neurosearch(*args, cwd=cwd))
        assert token not in line and f"{user}:***@" in line, line

    # `neurosearch ui`: the MLflow server's command line (what `ps` shows) never holds it
    port = _free_port()
    ui = subprocess.Popen([sys.executable, "-m", "neurosearch.search.cli", "ui", "--port", str(port)], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reader = line_reader(ui)
    output = reader.output
    try:
        reader.until("MLflow UI on")
        assert any(re.search(rf"MLflow UI on postgresql://{user}:\*\*\*@", line) for line in output), "".join(output)
        children = psutil.Process(ui.pid).children(recursive=True)
        cmdlines = {child.pid: Path(f"/proc/{child.pid}/cmdline").read_bytes().decode(errors="replace")
                    for child in children}
        assert any("mlflow" in c and "server" in c for c in cmdlines.values()), cmdlines
        assert not [c for c in cmdlines.values() if token in c]
        assert token not in "".join(output)
    finally:
        ui.send_signal(signal.SIGINT)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            ui.kill()
            ui.wait()
    shutil.rmtree(tmp_path / "elsewhere", ignore_errors=True)
