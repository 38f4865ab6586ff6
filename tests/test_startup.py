"""The command line answers `--help`, `--version` and a mistake without importing the
heavy libraries (torch, MLflow: seconds each), and `studies` without torch or MLflow.

Real processes, no timing: bench/bench_startup.py measures the time; this keeps the
imports that the time depends on out of the start-up path."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

HEAVY = ("torch", "mlflow", "matplotlib", "neuron", "sklearn")

#: runs the CLI's entry point in-process with the given arguments, then prints the heavy
#: modules it imported and the exit code
PROBE = """
import json, sys
watched = %r + tuple(json.loads(sys.argv[2]))
sys.argv = ["neurosearch", *json.loads(sys.argv[1])]
from neurosearch.search.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"imported": sorted(m for m in watched if m in sys.modules),
                  "code": code}))
""" % (HEAVY,)


def imported_by(args: list[str], cwd: Path, also: tuple[str, ...] = ()) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(also)],
                            capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    (["run", "--help"], 0),
    (["--version"], 0),
    (["run", "--bogus"], 2),
    (["run", "--config", "/nonexistent.toml"], 2),
    (["run", "--set", "nosuch.key=1"], 2),
])
def test_start_up_and_mistakes_import_no_heavy_library(tmp_path: Path, args: list[str], code: int) -> None:
    (tmp_path / "search.toml").write_text('[study]\nname = "probe"\nstorage = "sqlite:///optuna.db"\n')
    found = imported_by(args, tmp_path, also=("optuna",))
    assert found == {"imported": [], "code": code}


@pytest.mark.parametrize("command", ["studies", "report"])
def test_studies_and_report_read_the_storage_without_its_orm(tmp_path: Path, command: str) -> None:
    # SQLAlchemy and Alembic (Optuna's storage) cost half a second before the first row:
    # the readers query Optuna's tables directly (search/study/reader.py)
    import optuna

    (tmp_path / "search.toml").write_text('[study]\nname = "probe"\nstorage = "sqlite:///optuna.db"\n')
    optuna.create_study(study_name="probe", storage=f"sqlite:///{tmp_path}/optuna.db")
    found = imported_by([command], tmp_path, also=("sqlalchemy", "alembic"))
    assert found == {"imported": [], "code": 0}


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "neurosearch.search.cli", "--version"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert (result.returncode, result.stdout.strip()) == (0, f"neurosearch {version('neurosearch')}")


#: the `postgres` extra not installed: every PostgreSQL driver SQLAlchemy could load is
#: blocked (a None in sys.modules makes its import fail), then the CLI runs in-process
NO_DRIVER = """
import sys
for name in ("psycopg", "psycopg2", "asyncpg", "pg8000"):
    sys.modules[name] = None
sys.argv = ["neurosearch", *sys.argv[1:]]
from neurosearch.search.cli import main
main()
"""


def test_postgres_url_without_its_driver_names_the_extra(tmp_path: Path) -> None:
    url = "postgresql://postgres:secret@127.0.0.1:5432/postgres"
    result = subprocess.run([sys.executable, "-c", NO_DRIVER, "studies", "--storage", url],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    line = " ".join(result.stdout.split())  # rich may wrap the one line
    assert result.returncode == 2, result.stderr
    assert line.startswith("error: cannot open the study storage postgresql://postgres:***@127.0.0.1:5432/postgres")
    assert 'pip install "neurosearch[postgres]"' in line and 'pip install -e ".[postgres]"' in line
    assert "secret" not in result.stdout + result.stderr
