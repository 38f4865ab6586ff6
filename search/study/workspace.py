"""A study's stored state, in one place: its Optuna storage, the names of what it records
there, and its files under ``work_dir`` (dataset cache, checkpoints, trained models).

Every command reaches the storage through ``open_storage`` (workers with heartbeats,
readers without), a study by name through ``load_study``, and a file through
``Workspace`` (keyed by the study's uid); a trained model is written by ``save_model``
and read by ``load_model``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError, SQLAlchemyError

from neurosearch.spaces import InputMeta, get_family

from ..config import Config, StudySection
from ..errors import POSTGRES_DRIVER, UserError, first_reason, mask_url, sqlite_file
from ..training.weights import load_weights, save_atomic
from .attrs import ATTR_STUDY_UID
from .retry import FIRST_USE, Retry, sqlite_first_use

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------- the storage


#: SQLite reports these faults as OperationalError too, yet waiting does not mend them
NOT_MENDED_BY_WAITING = ("no such table", "no such column", "has no column", "syntax error",
                         "readonly database", "file is not a database")


def waiting_can_mend(exc: BaseException) -> bool:
    """Worth waiting out: the database went away (a restart, a network blip, a lost file
    server, a locked SQLite file) or its disk is full (space can be freed), as opposed to
    an error that stays (a broken schema, a read-only file, not a database)."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, PendingRollbackError) and cause.__context__ is not None:
        # the session was used again after its connection died (Optuna's get_trials
        # retries a failed query in the same session): judged by that first error
        return waiting_can_mend(cause.__context__)
    if isinstance(cause, OperationalError) and any(s in str(cause.orig).lower() for s in NOT_MENDED_BY_WAITING):
        return False
    return isinstance(cause, (OperationalError, InterfaceError)) or (
        isinstance(cause, DBAPIError) and cause.connection_invalidated
    )


def storage_failure(config: Config, exc: BaseException) -> str | None:
    """The one line for a study storage that failed in the middle of a run and stayed
    failed past ``study.reconnect_s`` (None: ``exc`` is not a storage error). Nothing
    finished is lost: every finished trial is in the storage, a trial cut off is retried
    once its heartbeat is stale."""
    if not isinstance(exc, (SQLAlchemyError, optuna.exceptions.StorageInternalError)):
        return None
    url = config.study.storage
    reason = first_reason(exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc)
    full = "disk is full" in reason.lower() or "no space left" in reason.lower()
    finished = _finished_trials(url, config.study.name)
    kept = "its finished trials are kept" if finished is None else f"its {finished} finished trial(s) are kept"
    waited = f" and stayed so for {config.study.reconnect_s:g} s" if waiting_can_mend(exc) else ""
    fix = "free some space on the disk holding it" if full else "fix the storage"
    return (f"the study storage {mask_url(url)} failed mid-run ({reason}){waited}; {kept}, a trial cut off is retried: "
            f"{fix} and run the same command again")


def _finished_trials(url: str, study: str) -> int | None:
    """Finished (complete or pruned) trials of ``study`` in an SQLite file, read without
    writing (a full disk still reads); None for other databases, which may be gone."""
    import sqlite3

    database = sqlite_file(url)
    if database is None:
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            return int(db.execute(
                "SELECT count(*) FROM trials JOIN studies USING (study_id) "
                "WHERE studies.study_name = ? AND trials.state IN ('COMPLETE', 'PRUNED')", (study,)).fetchone()[0])
    except sqlite3.Error:
        return None


#: a storage call waits out a lost database (for the config's ``reconnect_s``), then raises
RECONNECT = Retry(when=waiting_can_mend, seconds=StudySection().reconnect_s, what="the study storage",
                  warn_on_retry=True)


class ResilientRDBStorage(RDBStorage):
    """RDBStorage whose calls wait out a lost database (``retry``) instead of killing the
    worker; pre-ping replaces the pool's dead connections. A retried write that had in
    fact committed is harmless: claiming an already-RUNNING trial returns False, and an
    orphaned RUNNING trial is failed by the heartbeat and retried."""

    retry: Retry = RECONNECT


def _reconnecting(name: str) -> None:
    method = getattr(RDBStorage, name)

    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self.retry.call(method, self, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    setattr(ResilientRDBStorage, name, call)


for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "get_best_trial", "record_heartbeat", "_get_stale_trial_ids",
):
    _reconnecting(_name)




def open_storage(where: Config | str) -> RDBStorage:
    """The study storage, pre-pinged and reconnecting.

    With a config (a worker: ``run``/``worker``), heartbeats are on and a dead worker's
    trial is retried (Optuna's ``RetryHeartbeatStaleTrialCallback``), and a lost
    database is waited out for ``study.reconnect_s``. With a bare URL (a reader:
    ``report``, ``studies``, ``export``) there are no heartbeats.
    """
    settings = where.study if isinstance(where, Config) else StudySection(storage=where)
    url = settings.storage
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}
    heartbeat: dict[str, Any] = {}
    if isinstance(where, Config):
        heartbeat = {
            "heartbeat_interval": settings.heartbeat_s,
            "grace_period": settings.grace_s,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry),
        }
    try:
        with sqlite_first_use(url):
            storage = FIRST_USE.call(ResilientRDBStorage, url, engine_kwargs=engine, **heartbeat)
    except (SQLAlchemyError, ImportError, ValueError, RuntimeError) as exc:  # RuntimeError: a schema Optuna cannot use
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ImportError) and url.startswith("postgresql"):
            reason += POSTGRES_DRIVER
        raise UserError(f"cannot open the study storage {mask_url(url)}: {reason}") from None
    storage.retry = RECONNECT.lasting(settings.reconnect_s)
    return storage


@contextlib.contextmanager
def _reading(url: str) -> Iterator[None]:
    """A reader's storage call that fails (the database went away after opening, a schema
    Optuna cannot read) is one line naming the masked URL."""
    try:
        yield
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise UserError(f"cannot read the study storage {mask_url(url)}: {first_reason(exc.__cause__ or exc)}") from None


def _url(where: Config | str) -> str:
    return where.study.storage if isinstance(where, Config) else where


def load_study(where: Config | str, name: str) -> optuna.Study:
    """An existing study, for reading (``report``, ``export``); ``where`` as in ``open_storage``."""
    storage = open_storage(where)
    try:
        with _reading(_url(where)):
            return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"no study named {name!r} in {mask_url(_url(where))}") from None


def study_summaries(where: Config | str) -> list[optuna.study.StudySummary]:
    """Every study in the storage (``studies``); ``where`` as in ``open_storage``."""
    storage = open_storage(where)
    with _reading(_url(where)):
        return optuna.get_all_study_summaries(storage=storage)


def first_attempt(trial: FrozenTrial) -> int:
    """The number of the trial's first attempt: its own, or the one its retries go back to
    (Optuna's ``RetryHeartbeatStaleTrialCallback`` records it)."""
    root = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if root is None else root


def study_uid(study: optuna.Study) -> str | None:
    """The study's uid (``ATTR_STUDY_UID``); None for a study created before uids existed."""
    return study.user_attrs.get(ATTR_STUDY_UID)


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study was opened on (Optuna has no public accessor for it)."""
    return study._storage


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Workspace:
    """Where one study keeps its files under ``work_dir``; all its workers share it (a
    shared file system when they run on several machines)."""

    work_dir: Path
    study: str
    uid: str | None = None

    @classmethod
    def of(cls, config: Config, uid: str | None = None) -> "Workspace":
        """The study's files; ``uid``: its ``study_uid`` (None: the dataset cache only, or
        a study that predates uids)."""
        return cls(Path(config.study.work_dir), config.study.name, uid)

    @property
    def datasets(self) -> Path:
        """The dataset cache (one folder per simulator config hash), shared by all studies."""
        return self.work_dir / "datasets"

    @property
    def folder(self) -> Path:
        """``studies/<name>/<uid>``: one study's files, never another's of the same name."""
        named = self.work_dir / "studies" / self.study
        return named if self.uid is None else named / self.uid

    def checkpoint(self, trial: FrozenTrial) -> Path:
        """Keyed by the first attempt's number, so every retry finds the same file."""
        return self.folder / "checkpoints" / f"trial-{first_attempt(trial)}.pt"

    def model(self, number: int) -> Path:
        """A finished trial's trained network (``save_model``/``load_model``)."""
        return self.folder / "models" / f"trial-{number}.pt"

    def export(self, number: int, suffix: str) -> Path:
        """The default file of ``neurosearch export``."""
        return self.work_dir / "exports" / f"{self.study}-trial-{number}{suffix}"


# --------------------------------------------------------------------------- trained models


def save_model(path: Path, model: torch.nn.Module, spec: dict, inputs: InputMeta, v_mean: float,
               v_std: float) -> None:
    """Everything needed to run the network again: spec, weights, input layout, voltage scale.
    Written atomically, so a reader never sees half a file."""
    save_atomic(
        {
            "spec": spec,
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            "n_inputs": inputs.n_inputs,
            "groups": list(inputs.groups),
            "v_mean": v_mean,
            "v_std": v_std,
        },
        path,
    )


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The trained network (eval mode, on ``device``) and its saved record (spec, voltage scale);
    a file that holds more than weights is refused (``load_weights``)."""
    saved = load_weights(path)
    inputs = InputMeta(n_inputs=saved["n_inputs"], groups=tuple(saved["groups"]))
    model = get_family(saved["spec"]["family"]).build(saved["spec"], inputs)
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), saved
