"""The Optuna study: storage, the depth plan, pruning and the worker loop.

*Shallowest passing* needs evidence at every depth, so a study is a **plan** of
slots ``(family, depth, repeat)`` enqueued once, shallow first; the sampler (TPE)
chooses everything else. Workers only ever run enqueued slots, claimed atomically
through the storage, so any number of workers on any machines complete exactly
the planned trials. Dead workers are found by Optuna's heartbeat and their trials
re-enqueued by ``RetryHeartbeatStaleTrialCallback``; a Ctrl-C re-enqueues at once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from .config import Config
from .errors import UserError
from .metrics import METRICS
from .sqlrace import first_use
from .tracking import mask_url

log = logging.getLogger(__name__)
PLAN_KEYS = ("family", "depth", "repeat")
MAX_DEPTH = 64
MAX_REPEAT = 10_000


def plan(config: Config) -> list[dict[str, Any]]:
    """Every slot of the study, shallowest depth first, families interleaved."""
    depths = sorted({d for name in config.study.families for d in config.space(name).depths})
    return [
        {"family": name, "depth": depth, "repeat": repeat}
        for depth in depths
        for name in config.study.families
        if depth in config.space(name).depths
        for repeat in range(config.study.trials_per_depth)
    ]


def suggest_slot(trial: optuna.Trial, families: list[str]) -> tuple[str, int]:
    """The slot's fixed values, read through suggest_* so they are ordinary params."""
    family = trial.suggest_categorical("family", sorted(families))
    depth = trial.suggest_int("depth", 1, MAX_DEPTH)
    trial.suggest_int("repeat", 0, MAX_REPEAT)
    return str(family), int(depth)


class DepthMedianPruner(BasePruner):
    """Median pruning among trials of the same family and depth only.

    Optuna's MedianPruner compares a trial with all others; here that would prune
    shallow networks for being worse than deep ones and destroy the per-depth
    evidence the study exists to produce. Validation AUC on a few held-out
    simulations is noisy from epoch to epoch, so a trial's best value so far is
    compared with its peers' best values up to the same epoch, and only once
    ``min_peers`` peers of its depth have finished.
    """

    def __init__(self, warmup_steps: int, higher_is_better: bool, min_peers: int = 2) -> None:
        self.warmup_steps = warmup_steps
        self.min_peers = min_peers
        self.sign = 1.0 if higher_is_better else -1.0

    def _best_until(self, values: dict[int, float], step: int) -> float:
        seen = [self.sign * v for s, v in values.items() if s <= step and v == v]
        return self.sign * max(seen) if seen else float("nan")

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.warmup_steps:
            return False
        current = self._best_until(trial.intermediate_values, step)
        if current != current:
            return True  # NaN at every epoch so far is hopeless
        slot = (trial.params.get("family"), trial.params.get("depth"))
        peers = [
            self._best_until(t.intermediate_values, step)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if (t.params.get("family"), t.params.get("depth")) == slot and step in t.intermediate_values
        ]
        peers = [v for v in peers if v == v]
        if len(peers) < self.min_peers:
            return False
        return self.sign * current < self.sign * float(np.median(peers))


def _connection_lost(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    return isinstance(cause, (OperationalError, InterfaceError)) or (
        isinstance(cause, DBAPIError) and cause.connection_invalidated
    )


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: "ResilientRDBStorage", *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.reconnect_s
        delay = 0.5
        while True:
            try:
                return method(self, *args, **kwargs)
            except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
                if not _connection_lost(exc) or time.monotonic() > deadline:
                    raise
                cause = exc.__cause__ or exc
                log.warning("storage unreachable (%s: %s); retrying for up to %.0f s", type(cause).__name__,
                            str(cause).splitlines()[0] if str(cause) else "", self.reconnect_s)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return call


class ResilientRDBStorage(RDBStorage):
    """RDBStorage whose calls wait out a lost database (a PostgreSQL restart, a network
    blip) for ``reconnect_s`` instead of killing the worker; pre-ping replaces the
    pool's dead connections. A retried write that had in fact committed is harmless:
    claiming an already-RUNNING trial returns False, and an orphaned RUNNING trial is
    failed by the heartbeat and retried."""

    reconnect_s: float = 180.0


for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "get_best_trial", "record_heartbeat", "_get_stale_trial_ids",
):
    setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))


def open_storage(config: Config) -> RDBStorage:
    """RDB storage with heartbeats, retry of dead workers' trials and pre-pinged connections."""
    url = config.study.storage
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    try:
        storage = first_use(
            lambda: ResilientRDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=config.study.heartbeat_s,
                grace_period=config.study.grace_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=config.study.max_retry),
            )
        )
        storage.reconnect_s = config.study.reconnect_s
        return storage
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot open the study storage {mask_url(url)}: {reason}") from None


def open_study(config: Config, storage: RDBStorage, dataset_attrs: dict[str, Any]) -> tuple[optuna.Study, bool]:
    """Create the study, or join it if it exists; returns (study, created_here)."""
    metric = METRICS[config.target.metric]
    sampler = optuna.samplers.TPESampler(seed=config.study.seed, n_startup_trials=4)
    pruner: BasePruner = (
        DepthMedianPruner(config.training.prune_warmup_epochs, metric.higher_is_better)
        if config.training.pruning == "depth-median"
        else optuna.pruners.NopPruner()
    )
    direction = "maximize" if metric.higher_is_better else "minimize"
    try:
        study = optuna.create_study(
            study_name=config.study.name, storage=storage, direction=direction, sampler=sampler, pruner=pruner
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=config.study.name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
        if study.direction.name.lower() != direction:
            raise UserError(
                f"study {config.study.name!r} optimises {study.direction.name.lower()}, but target.metric "
                f"{config.target.metric!r} needs {direction}; use a new study name"
            )
    existing = study.user_attrs.get("dataset_hash")
    if existing is not None and existing != dataset_attrs["dataset_hash"]:
        raise UserError(
            f"study {config.study.name!r} was run on dataset {existing[:12]} but this config makes dataset "
            f"{dataset_attrs['dataset_hash'][:12]}; the [simulator] section differs from the study's. "
            "Use the study's simulator settings or a new study name."
        )
    return study, created


def record_study_attrs(study: optuna.Study, config: Config, dataset_attrs: dict[str, Any]) -> None:
    """What `report` needs to read the study later without the config file."""
    attrs = {
        **dataset_attrs,
        "target_metric": config.target.metric,
        "target_threshold": config.target.threshold,
        "families": config.study.families,
    }
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def enqueue_plan(study: optuna.Study, config: Config) -> int:
    """Enqueue the plan's slots that the study does not hold yet.

    Idempotent, and skipped when the stored plan is this one, so workers joining a
    running study do not race to enqueue; a larger budget in the config extends it.
    """
    slots = plan(config)
    signature = [[s[k] for k in PLAN_KEYS] for s in slots]
    if study.user_attrs.get("plan") == signature:
        return 0
    held = {tuple(t.params.get(k) for k in PLAN_KEYS) for t in study.get_trials(deepcopy=False)}
    held |= {
        tuple(t.system_attrs.get("fixed_params", {}).get(k) for k in PLAN_KEYS) for t in study.get_trials(deepcopy=False)
    }
    added = 0
    for slot in slots:
        if tuple(slot[k] for k in PLAN_KEYS) not in held:
            study.enqueue_trial(slot)
            added += 1
    held |= {tuple(slot[k] for k in PLAN_KEYS) for slot in slots}
    held.discard((None, None, None))
    study.set_user_attr("planned_trials", len(held))
    study.set_user_attr("plan", signature)
    return added


def claim_waiting_trial(study: optuna.Study) -> int | None:
    """Atomically move one WAITING trial to RUNNING; None when the queue is empty."""
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class Heartbeat:
    """Records the trial's heartbeat in the background while the trial trains."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{trial_id}")

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a database blip: the next beat retries; the grace period covers it
                pass
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TrialFailed(Exception):
    """The trial cannot finish (e.g. out of memory); recorded as FAIL with this reason."""


Objective = Callable[[optuna.Trial], float]


def run_worker(
    study: optuna.Study,
    objective: Objective,
    *,
    poll_s: float,
    on_wait: Callable[[int], None] | None = None,
    on_done: Callable[[FrozenTrial], None] | None = None,
) -> int:
    """Run planned trials until none is waiting or running anywhere; returns trials run here."""
    storage = study._storage
    interval = storage.get_heartbeat_interval() or poll_s
    ran = 0
    while True:
        fail_stale_trials(study)
        trial_id = claim_waiting_trial(study)
        if trial_id is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running:
                return ran
            if on_wait is not None:
                on_wait(len(running))
            time.sleep(poll_s)
            continue
        trial = optuna.trial.Trial(study, trial_id)
        with Heartbeat(storage, trial_id, interval):
            try:
                value = objective(trial)
                frozen = study.tell(trial, value)
            except optuna.TrialPruned:
                frozen = study.tell(trial, state=TrialState.PRUNED)
            except TrialFailed as exc:
                trial.set_user_attr("fail_reason", str(exc))
                frozen = study.tell(trial, state=TrialState.FAIL)
            except (optuna.exceptions.StorageInternalError, SQLAlchemyError):
                raise  # the database stayed away past reconnect_s: the heartbeat will hand the trial on
            except Exception as exc:  # a crash in one trial must not end the study
                log.exception("trial %d failed", trial.number)
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:2000])
                frozen = study.tell(trial, state=TrialState.FAIL)
            except KeyboardInterrupt:
                trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); re-enqueued to resume from its checkpoint")
                frozen = study.tell(trial, state=TrialState.FAIL)
                RetryHeartbeatStaleTrialCallback(max_retry=None)(study, frozen)
                raise
        ran += 1
        if on_done is not None:
            on_done(frozen)
