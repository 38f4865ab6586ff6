"""`neurosearch ui`: the MLflow UI on the study's tracking store.

Starts ``mlflow server`` on the configured ``tracking.uri`` (the local SQLite store by
default), bound to 127.0.0.1 unless told otherwise, waits until it answers and prints
the URL of the study's experiment. When ``tracking.uri`` is already a tracking server
(``http(s)://``) there is nothing to start: the URL is printed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import UserError, first_reason, mask_secrets, mask_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


def url_host(host: str) -> str:
    """The host to put in a URL for a bind address (0.0.0.0 / :: are reachable at localhost)."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def experiment_url(base: str, tracking_uri: str, experiment: str) -> str:
    """``base`` plus the experiment's page when the store already has that experiment."""
    try:
        from mlflow import MlflowClient

        found = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(experiment)
    except Exception:
        found = None
    if found is None:
        return base
    # MLflow 3 opens an experiment in its GenAI view (traces: none here); this asks for the runs table
    return f"{base}/#/experiments/{found.experiment_id}?workflowType=machine_learning"


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def server_command(artifacts: str, host: str, port: int, workers: int = 1) -> list[str]:
    """``mlflow server``'s command line. It never holds the store URI (whose password
    anyone could read in ``ps``): ``server_env`` passes that."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]
    if "://" not in artifacts:  # where runs created from the UI itself put artifacts
        command += ["--artifacts-destination", Path(artifacts).resolve().as_uri()]
    return command


def server_env(tracking_uri: str) -> dict[str, str]:
    """``mlflow server``'s environment: the store URI in ``MLFLOW_BACKEND_STORE_URI``
    (which its ``--backend-store-uri`` reads; a process's environment is readable only
    by its owner, unlike its command line)."""
    # a viewer needs no background job runner (MLflow would start seven huey worker processes)
    job_runner = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return {**os.environ, "MLFLOW_BACKEND_STORE_URI": tracking_uri, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": job_runner}


def check_database(tracking_uri: str, timeout_s: int = 10) -> None:
    """A database store that cannot be reached is one line, at once (``mlflow server``
    would retry for minutes, then print a traceback)."""
    dialect = tracking_uri.split("://", 1)[0].split("+", 1)[0]
    if dialect not in ("postgresql", "mysql", "mssql"):
        return
    from .. import probe

    try:
        probe.database(tracking_uri, timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the user's to fix
        reason = mask_secrets(first_reason(exc))
        raise UserError(f"cannot reach the tracking store {mask_url(tracking_uri)}: {reason}") from None


def last_error(output: str) -> str:
    """The line of a server's output that says what went wrong (no traceback; passwords masked)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Exit)\b", line)]
    line = (errors or lines or ["(no output)"])[-1]
    return mask_secrets(line)[:500]


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(tracking_uri: str, artifacts: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          wait_s: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Start the MLflow server in a child process and wait until it answers; (process, base URL)."""
    if "://" not in tracking_uri:
        tracking_uri = Path(tracking_uri).resolve().as_uri()
    if not port_free(host, port):
        raise UserError(f"port {port} on {host} is already in use; pick another with --port")
    check_database(tracking_uri)
    cwd = Path(artifacts).resolve().parent if "://" not in artifacts else Path.cwd()
    cwd.mkdir(parents=True, exist_ok=True)
    # its own process group: `mlflow server` runs uvicorn in a child, and stop() ends both
    process = subprocess.Popen(server_command(artifacts, host, port), cwd=cwd, env=server_env(tracking_uri),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://{url_host(host)}:{port}"
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                why = last_error(process.stdout.read() if process.stdout else "")
                raise UserError(
                    f"the MLflow server on {mask_url(tracking_uri)} exited with code {process.returncode}: {why}"
                )
            if answers(base):
                return process, base
            time.sleep(0.5)
        raise UserError(f"the MLflow server did not answer on {base} within {wait_s:.0f} s")
    except BaseException:  # also Ctrl-C while waiting: never leave a server behind
        stop(process)
        raise


def stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Terminate the server started by ``start`` and its web-server child (its process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    if process.stdout:
        process.stdout.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(tracking_uri: str, artifacts: str, experiment: str, host: str, port: int,
          say: Callable[[str], None]) -> None:
    """The ``ui`` command: print the URL, keep the server in the foreground until Ctrl-C."""
    if tracking_uri.startswith(("http://", "https://")):
        say(f"tracking.uri is a tracking server; its UI is at {experiment_url(tracking_uri.rstrip('/'), tracking_uri, experiment)}")
        return
    # SIGTERM/SIGHUP (a closed terminal, `timeout`, a service manager) end the server too
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        process, base = start(tracking_uri, artifacts, host, port)
    except KeyboardInterrupt:
        say("stopped before the server answered")
        return
    say(f"MLflow UI on {mask_url(tracking_uri)}: {experiment_url(base, tracking_uri, experiment)}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"[yellow]bound to {host}: anyone who can reach this machine can read (and change) the runs[/yellow]")
    say("press Ctrl-C to stop")
    try:
        while process.poll() is None:
            line = process.stdout.readline() if process.stdout else ""
            if not line:
                time.sleep(0.2)
    except KeyboardInterrupt:
        say("stopping the MLflow UI")
    finally:
        stop(process)
