"""MLflow logging: one experiment per study, one study run, one child run per trial.

Uses ``MlflowClient`` with explicit run ids rather than the fluent ``mlflow.start_run``
stack, so concurrent workers (and threads) never share an "active run" and never
clobber each other's runs. Anything that could hold a password goes through
``mask_url`` first.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .sqlrace import first_use

log = logging.getLogger(__name__)
T = TypeVar("T")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url if "@" not in url else "***"


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = str(value)[:6000]
    return out


def _patient(method: Callable[..., T]) -> Callable[..., T | None]:
    """Retry a logging call while the tracking store is unreachable, then warn and go on:
    a tracking outage must never cost a trial."""

    @functools.wraps(method)
    def call(self: "Tracker", *args: Any, **kwargs: Any) -> T | None:
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                return method(self, *args, **kwargs)
            except (MlflowException, SQLAlchemyError, OSError) as exc:
                if time.monotonic() > deadline:
                    log.warning("MLflow %s failed, not logged: %s", method.__name__, str(exc).splitlines()[0])
                    return None
                time.sleep(2.0)

    return call


class Tracker:
    """The study's MLflow experiment and runs."""

    patience_s: float = 180.0

    def __init__(self, uri: str, artifact_root: str, experiment: str) -> None:
        self.uri = uri

        def open_store() -> str:  # MlflowClient creates/migrates a SQL store's schema right away
            self.client = MlflowClient(tracking_uri=uri)
            return self._experiment(artifact_root, experiment)

        self.experiment_id = first_use(open_store)

    def _experiment(self, artifact_root: str, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = artifact_root if "://" in artifact_root else Path(artifact_root, name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another worker created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def create_study_run(self, study_name: str, storage_url: str, params: dict[str, Any]) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study {study_name}",
            tags={"neurosearch.kind": "study", "optuna.study": study_name, "optuna.storage": mask_url(storage_url)},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def start_trial(self, parent_run_id: str, study_name: str, number: int, tags: dict[str, Any]) -> str:
        all_tags = {
            "mlflow.parentRunId": parent_run_id,
            "neurosearch.kind": "trial",
            "optuna.study": study_name,
            "optuna.trial": str(number),
            "state": "RUNNING",
            **{key: str(value) for key, value in tags.items()},
        }
        run = self.client.create_run(self.experiment_id, run_name=f"trial {number}", tags=all_tags)
        return run.info.run_id

    @_patient
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        flat = _flatten("", params, {})
        items = [Param(key, value) for key, value in flat.items()]
        for first in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[first : first + 100])

    @_patient
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        rows = [Metric(key, float(value), now, step or 0) for key, value in metrics.items() if value == value]
        if rows:
            self.client.log_batch(run_id, metrics=rows)

    @_patient
    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    @_patient
    def end_run(self, run_id: str, state: str) -> None:
        """Close a run; ``state`` is the Optuna state name (COMPLETE, PRUNED, FAIL)."""
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}.get(state, "KILLED")
        self.set_tags(run_id, {"state": state})
        self.client.set_terminated(run_id, status=status)

    def child_runs(self, parent_run_id: str) -> list:
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=5000
        )
