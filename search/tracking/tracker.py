"""MLflow logging: one experiment per study, one study run, one child run per trial.

Everything neurosearch sends to MLflow (params, metrics, tags, artifacts, registered
models) goes through ``Tracker``. It uses ``MlflowClient`` with explicit run ids rather
than the fluent ``mlflow.start_run`` stack, so concurrent workers (and threads) never
share an "active run" and never clobber each other's runs. Every param and tag value
goes through ``mask_secrets`` here, whatever its name: no URL's password reaches MLflow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from mlflow import MlflowClient

from ..errors import mask_secrets
from ..study.retry import FIRST_USE, Retry, sqlite_first_use

#: a logging call waits out an unreachable tracking store, then warns and goes on:
#: a tracking outage must never cost a trial
PATIENT = Retry(
    when=lambda exc: isinstance(exc, (MlflowException, SQLAlchemyError, OSError)),
    seconds=180.0, wait=lambda n: 2.0, give_up="warn", what="MLflow logging",
)

#: MLflow run status of a trial's outcome (a trial cut short by Ctrl-C is KILLED)
RUN_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED", TrialState.FAIL: "FAILED"}


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = _safe(value)[:6000]
    return out


def _safe(value: Any) -> str:
    """A param or tag value as MLflow stores it, any URL's password masked."""
    return mask_secrets(str(value))


class Tracker:
    """The study's MLflow experiment and runs."""

    def __init__(self, uri: str, artifact_root: str, experiment: str) -> None:
        self.uri = uri

        def open_store() -> str:  # MlflowClient creates/migrates a SQL store's schema right away
            self._client = MlflowClient(tracking_uri=uri)
            return self._experiment(artifact_root, experiment)

        with sqlite_first_use(uri):
            self.experiment_id = FIRST_USE.call(open_store)

    def _experiment(self, artifact_root: str, name: str) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = artifact_root if "://" in artifact_root else Path(artifact_root, name).as_uri()
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another worker created it first
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def create_run(self, name: str, tags: dict[str, Any]) -> str:
        """A new top-level run of the experiment; returns its id."""
        run = self._client.create_run(self.experiment_id, run_name=name,
                                      tags={key: _safe(value) for key, value in tags.items()})
        return run.info.run_id

    def create_study_run(self, study_name: str, storage_url: str, params: dict[str, Any]) -> str:
        run_id = self.create_run(f"study {study_name}", {"neurosearch.kind": "study", "optuna.study": study_name,
                                                         "optuna.storage": storage_url})
        self.log_params(run_id, params)
        return run_id

    def start_trial(self, parent_run_id: str, study_name: str, number: int, tags: dict[str, Any]) -> str:
        all_tags = {
            "mlflow.parentRunId": parent_run_id,
            "neurosearch.kind": "trial",
            "optuna.study": study_name,
            "optuna.trial": str(number),
            "state": "RUNNING",
            **{key: _safe(value) for key, value in tags.items()},
        }
        run = self._client.create_run(self.experiment_id, run_name=f"trial {number}", tags=all_tags)
        return run.info.run_id

    @PATIENT
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        flat = _flatten("", params, {})
        items = [Param(key, value) for key, value in flat.items()]
        for first in range(0, len(items), 100):
            self._client.log_batch(run_id, params=items[first : first + 100])

    @PATIENT
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        rows = [Metric(key, float(value), now, step or 0) for key, value in metrics.items() if value == value]
        if rows:
            self._client.log_batch(run_id, metrics=rows)

    @PATIENT
    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self._client.log_batch(run_id, tags=[RunTag(key, _safe(value)) for key, value in tags.items()])

    @PATIENT
    def end_run(self, run_id: str, state: TrialState | None) -> None:
        """Close a trial's run with its Optuna state; None: interrupted (Ctrl-C), the run is
        KILLED and tagged INTERRUPTED (its trial is re-enqueued)."""
        self.set_tags(run_id, {"state": "INTERRUPTED" if state is None else state.name})
        self._client.set_terminated(run_id, status=RUN_STATUS.get(state, "KILLED"))

    def log_artifacts(self, run_id: str, files: list[Path], folder: str | None = None) -> None:
        """Files on the run (under ``folder``). Not retried: callers guard it with
        ``retry.never_fails`` (an artifact is optional)."""
        for file in files:
            self._client.log_artifact(run_id, str(file), folder)

    def register_model(self, run_id: str, model_dir: Path, artifact_path: str, name: str, tags: dict[str, str],
                       description: str) -> str:
        """Log an MLflow model folder on the run and add it as a new version of the registered
        model ``name`` (created on first use); returns the version."""
        self._client.log_artifacts(run_id, str(model_dir), artifact_path)
        try:
            self._client.create_registered_model(
                name, description="neurosearch winner: spikes [batch, n_inputs, time] -> spike probability, voltage (mV)"
            )
        except MlflowException:  # it exists already (or another worker just made it)
            pass
        source = f"{self._client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        safe_tags = {key: _safe(value) for key, value in tags.items()}
        version = self._client.create_model_version(name, source=source, run_id=run_id, tags=safe_tags,
                                                   description=description)
        return str(version.version)
