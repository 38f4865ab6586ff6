"""Everything that can fail before the simulation, checked in seconds before it starts.

Simulating the dataset takes minutes; a wrong storage URL, an unreachable tracking
store, a missing GPU or a folder that cannot be written must not be found after it.
``preflight`` opens what a worker needs (the study storage, the tracking store, the
training device) and tries every folder it will write, and each failure is one
``UserError`` naming what and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import torch
from mlflow.exceptions import MlflowException
from mlflow.store.db.db_types import DATABASE_ENGINES
from optuna.storages import RDBStorage
from sqlalchemy.exc import SQLAlchemyError

from . import probe
from .config import Config
from .errors import UserError, first_reason, mask_url, sqlite_file
from .folders import writable_folder
from .study.workspace import Workspace, open_storage
from .tracking.tracker import Tracker
from .training.train import resolve_device


@dataclass(frozen=True)
class Ready:
    """What the preflight opened, for the run to use (nothing is opened twice)."""

    storage: RDBStorage
    tracker: Tracker
    device: torch.device


def writable_file(path: Path, what: str) -> Path:
    """A file the command will write at its end: its folder must exist and take a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"{what} {path}: the folder {path.parent} does not exist")
    writable_folder(path.parent, f"the folder of {what}")
    return path


def _sqlite_folder(url: str) -> Path | None:
    """The folder of a SQLite database file (SQLite writes its journal beside it)."""
    database = sqlite_file(url)
    return None if database is None else database.parent


def check_tracking(uri: str, artifacts: str) -> None:
    """The tracking store answers and its local folders take files, within seconds.

    Only a store that is simply wrong fails here; once it has answered, a later outage
    is waited out by ``tracking.PATIENT``."""
    where = mask_url(uri)
    scheme = urlsplit(uri).scheme.lower()
    try:
        if scheme in ("http", "https"):
            probe.server(uri)
        elif scheme.split("+")[0] in DATABASE_ENGINES:
            folder = _sqlite_folder(uri)
            if folder is not None:
                writable_folder(folder, "the tracking store's folder")
            probe.database(uri)
        elif scheme in ("", "file"):
            writable_folder(Path(urlsplit(uri).path if scheme == "file" else uri), "the tracking store")
        # any other scheme (databricks, a plugin's) is MLflow's to open: ``open_tracker``
    except (SQLAlchemyError, ImportError, OSError) as exc:  # urllib's URLError is an OSError
        raise UserError(f"cannot reach the tracking store {where}: {first_reason(exc)}") from None
    if "://" not in artifacts:
        writable_folder(Path(artifacts), "the artifact folder")


def open_tracker(config: Config) -> Tracker:
    """The study's MLflow experiment, after ``check_tracking``; a store that answers but
    refuses (a bad schema, no permission) is one line too."""
    check_tracking(config.tracking.uri, config.tracking.artifacts)
    try:
        return Tracker(config.tracking.uri, config.tracking.artifacts, config.experiment_name)
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        raise UserError(f"cannot open the tracking store {mask_url(config.tracking.uri)}: {first_reason(exc)}") from None


def preflight(config: Config, json_out: Path | None = None) -> Ready:
    """Check, in seconds and before any simulation, everything a run needs: the report
    file's folder, ``work_dir``, the study storage, the tracking store and the device."""
    if json_out is not None:
        writable_file(json_out, "--json")
    writable_folder(Workspace.of(config).work_dir, "work_dir")
    folder = _sqlite_folder(config.study.storage)
    if folder is not None:
        writable_folder(folder, "the study storage's folder")
    storage = open_storage(config)
    device = resolve_device(config.training.device)
    return Ready(storage, open_tracker(config), device)
