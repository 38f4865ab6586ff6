"""What several test modules share: the tiny real study they run through the CLI."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable

import pytest


class LineReader:
    """A subprocess's output lines, read by a background thread, so that a test can wait
    for one line with a deadline instead of blocking on the pipe (``output``: every line so far)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=lambda: [*map(self._lines.put, process.stdout), self._lines.put(None)],
                         daemon=True).start()

    def until(self, pattern: str | re.Pattern, timeout: float = 240) -> re.Match | None:
        """The first new line matching ``pattern`` (None: the output ended or the time ran out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                return None
            self.output.append(line)
            if found := re.search(pattern, line):
                return found
        return None

    def drain(self, timeout: float = 5) -> None:
        """Collect what is left, until the output ends or stays silent for ``timeout`` s."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                return
            if line is None:
                return
            self.output.append(line)


@pytest.fixture(scope="session")
def line_reader() -> type[LineReader]:
    """``LineReader`` for test modules (conftest is not importable under --import-mode=importlib)."""
    return LineReader


TINY_STUDY = """
[study]
name = "{name}"
storage = "sqlite:///state/optuna.db"
work_dir = "state"
trials_per_depth = 1
skip_deeper_once_passing = false   # both depths train, whatever depth 1 reaches
heartbeat_s = 2
grace_s = 6

[tracking]
uri = "sqlite:///tracking/mlflow.db"
artifacts = "tracking/artifacts"

[target]
threshold = 0.5

[training]
epochs = {epochs}
steps_per_epoch = {steps_per_epoch}
batch_size = 4
window_ms = 300
burn_in_ms = 60

[simulator]
model = "l5pc"
n_simulations = 6
duration_ms = 1300
discard_ms = 300
seed = 2          # with this seed the valid and the test simulation both hold output spikes
processes = 2

[simulator.stimulus]
rate_scale = [1.2, 2.2]    # given, not calibrated: keeps the tiny study short

[spaces.tcn]
depths = [1, 2]
"""


@pytest.fixture(scope="session")
def tiny_toml() -> Callable[..., str]:
    """search.toml text of a tiny study (6 × 1 s of the bundled cell, TCN depths 1–2, SQLite, local MLflow)."""

    def make(name: str = "tiny", epochs: int = 2, steps_per_epoch: int = 4) -> str:
        return TINY_STUDY.format(name=name, epochs=epochs, steps_per_epoch=steps_per_epoch)

    return make


# --- a user's own cell (model = "custom"): a ball-and-stick whose "morphology" file holds
# its dendrite length, with one NMODL leak mechanism

BALL_AND_STICK = '''
from pathlib import Path
from neuron import h
from neurosearch.simulators import CellModel

def build(morphology):
    length = float(Path(morphology).read_text())   # the "morphology" file holds one number
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20
    soma.insert("hh")
    dends = []
    for k in range(2):
        d = h.Section(name=f"dend_{k}")
        d.L, d.diam, d.nseg = length, 1.0, 3
        d.insert("ns_test_leak")
        d.connect(soma(1))
        dends.append(d)
    sites = [(seg, k) for k, d in enumerate(dends) for seg in d]
    return CellModel(soma=soma, sites=sites, ampa_weight=0.003, nmda_weight=0.002, keep=dends)

def not_a_cell(morphology):
    return 42
'''

LEAK_MOD = """
NEURON { SUFFIX ns_test_leak NONSPECIFIC_CURRENT i RANGE g, e }
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER { g = 0.0001 (S/cm2) e = -65 (mV) }
ASSIGNED { v (mV) i (mA/cm2) }
BREAKPOINT { i = g * (v - e) }
"""


@pytest.fixture(scope="session")
def make_custom_cell() -> Callable[..., dict[str, Path]]:
    """Write a custom cell's files (builder cell.py, mechanism folder mods/, morphology
    morph.txt holding the dendrite length in µm) into a folder; their paths by role."""

    def make(folder: Path, length_um: float = 250) -> dict[str, Path]:
        (folder / "mods").mkdir(parents=True)
        (folder / "mods" / "leak.mod").write_text(LEAK_MOD)
        (folder / "cell.py").write_text(BALL_AND_STICK)
        (folder / "morph.txt").write_text(str(length_um))
        return {"builder": folder / "cell.py", "mechanisms": folder / "mods", "morphology": folder / "morph.txt"}

    return make


@pytest.fixture
def custom_files(tmp_path: Path, make_custom_cell) -> dict[str, Path]:
    return make_custom_cell(tmp_path)


# --- the PostgreSQL server (127.0.0.1:5432, user postgres, trust auth) of the tests marked postgres

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_log_tail(lines: int = 15) -> str:
    """The end of the server's own log, where it says why it ended a connection (when readable here)."""
    logs = sorted(Path("/var/log/postgresql").glob("postgresql-*.log"))
    try:
        return "".join(logs[-1].read_text(errors="replace").splitlines(keepends=True)[-lines:]) if logs else ""
    except OSError:
        return ""


class Postgres:
    """Fresh databases and roles on the local server, dropped when the test that made them ends."""

    def __init__(self) -> None:
        self.databases: list[str] = []
        self.roles: list[str] = []

    @staticmethod
    def execute(sql: str, params: tuple = ()) -> None:
        """One statement on a new autocommit admin connection (nothing pooled to outlive a restart)."""
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql, params)

    def database(self, prefix: str, owner: str | None = None) -> str:
        """A new empty database; its URL as user postgres."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        self.databases.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    def role(self, name: str, password: str) -> None:
        self.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        self.roles.append(name)

    def drop_all(self, wait_s: float = 90) -> None:
        """Drop what was made. A server that ends the connection or refuses it (restarting) is
        waited for and asked again, each time with a warning carrying the server's log: a test's
        own restart is over before its teardown, so what is warned of is a server that ended
        sessions by itself."""
        import psycopg

        statements = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in self.databases]
        statements += [f'DROP ROLE IF EXISTS "{name}"' for name in self.roles]
        deadline = time.monotonic() + wait_s
        for sql in statements:
            while True:
                try:
                    self.execute(sql)
                    break
                except psycopg.OperationalError as exc:
                    if time.monotonic() > deadline:
                        raise
                    warnings.warn(f"PostgreSQL ended the connection during {sql!r} ({exc}); "
                                  f"asking again. Its log ends:\n{pg_log_tail()}", stacklevel=1)
                    time.sleep(2)


@pytest.fixture
def postgres() -> Postgres:
    """The local PostgreSQL server, or a skip where it is not running (a failure on CI)."""
    import psycopg

    try:
        Postgres.execute("SELECT 1")
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running at 127.0.0.1:5432 on CI")
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    server = Postgres()
    yield server
    server.drop_all()


# --- where the suite's time goes (CI prints it after the run; issue: keep CI under 20 min)

#: what each module mostly spends its time on
TIME_KINDS = {
    "start-up and messages": ("test_startup", "test_config", "test_faults_errors", "test_faults_leaks", "test_packaging"),
    "NEURON": ("test_simulators", "test_calibration", "test_custom_model", "test_example_own_synapses",
               "test_integrators", "test_multipart"),
    "training and studies": ("test_end_to_end", "test_faults_signals", "test_distributed", "test_study",
                             "test_confirm", "test_learning_curve", "test_elm_parallel", "test_tcn_sparse",
                             "test_spaces", "test_metrics", "test_report"),
    "browser": ("test_ui_browser",),
}
_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = Path(report.location[0]).stem
    _seconds[module] = _seconds.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _seconds:
        return
    kind_of = {module: kind for kind, modules in TIME_KINDS.items() for module in modules}
    kinds: dict[str, float] = {}
    for module, seconds in _seconds.items():
        kind = kind_of.get(module, "other")
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    total = sum(_seconds.values())
    terminalreporter.section("where the time went (setup + call + teardown, s)")
    for kind, seconds in sorted(kinds.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{kind:<24} {seconds:7.0f}  {100 * seconds / total:4.0f}%")
    terminalreporter.write_line("by module: " + ", ".join(
        f"{module} {seconds:.0f}" for module, seconds in sorted(_seconds.items(), key=lambda item: -item[1])))
    terminalreporter.write_line(f"{'total':<24} {total:7.0f}")


# --- two workers (pytest-xdist): each test module stays on one worker, so its module-scoped
# fixtures (a simulated dataset, a finished study) are made once; every test of the
# PostgreSQL server shares one worker, because one of them restarts the server.

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = "postgres" if item.get_closest_marker("postgres") else Path(str(item.path)).stem
        item.add_marker(pytest.mark.xdist_group(group))
