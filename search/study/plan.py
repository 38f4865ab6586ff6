"""The Optuna study: the depth plan, pruning and the worker loop (its storage: ``workspace``).

*Shallowest passing* needs evidence at every depth, so a study is a **plan** of
slots ``(family, depth, repeat)`` enqueued once, shallow first; the sampler (TPE)
chooses everything else. Workers only ever run enqueued slots, claimed atomically
through the storage, so any number of workers on any machines complete exactly
the planned trials. Dead workers are found by Optuna's heartbeat and their trials
re-enqueued by ``RetryHeartbeatStaleTrialCallback``; a Ctrl-C re-enqueues at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import zlib
from typing import Any, Callable

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from neurosearch.spaces.base import MAX_DEPTH

from ..answer.metrics import METRICS
from ..config import Config
from ..errors import UserError
from ..signals import describe
from .attrs import (
    ATTR_DATASET_HASH,
    ATTR_FAIL_REASON,
    ATTR_FAMILIES,
    ATTR_PLAN,
    ATTR_PLANNED_TRIALS,
    ATTR_SKIP_REASON,
    ATTR_STUDY_UID,
    ATTR_TARGET_METRIC,
    ATTR_TARGET_THRESHOLD,
    OPTUNA_FIXED_PARAMS,
)
from .workspace import first_attempt, storage_of

log = logging.getLogger(__name__)
PLAN_KEYS = ("family", "depth", "repeat")
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


class _SlotView:
    """The study as one (family, depth) slot sees it: ``get_trials`` holds only that slot's
    trials; everything else is the study's. What Optuna's own pruners read to compare a
    trial with its peers."""

    def __init__(self, study: optuna.Study, slot: tuple[Any, Any]) -> None:
        self._study, self._slot = study, slot

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if (t.params.get("family"), t.params.get("depth")) == self._slot]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class DepthHalvingPruner(BasePruner):
    """Optuna's successive halving (asynchronous, as in ASHA), with the trials of one family
    and depth competing only with each other: at epochs ``min_epochs`` × factor^k, a trial
    goes on only if it is among the best 1/factor of its slot's trials that reached that
    rung, so weak configurations stop after a few epochs and a budget buys more of them.
    Across depths, as ``DepthMedianPruner`` explains, comparing would destroy the evidence
    per depth."""

    def __init__(self, min_epochs: int, reduction_factor: int) -> None:
        self._inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs,
                                                             reduction_factor=reduction_factor)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        slot = (trial.params.get("family"), trial.params.get("depth"))
        return self._inner.prune(_SlotView(study, slot), trial)  # type: ignore[arg-type]


#: the pruner each ``training.pruning`` builds, and why it stops a trial (the trial's prune reason)
PRUNE_REASONS = {"depth-median": "below the median of its depth",
                 "depth-halving": "not among the best of its depth at this rung (successive halving)"}


def make_pruner(config: Config) -> BasePruner:
    training = config.training
    higher = METRICS[config.target.metric].higher_is_better
    if training.pruning == "depth-median":
        return DepthMedianPruner(training.prune_warmup_epochs, higher)
    if training.pruning == "depth-halving":
        return DepthHalvingPruner(max(1, training.prune_warmup_epochs), training.halving_factor)
    return optuna.pruners.NopPruner()


def worker_seed(seed: int) -> int:
    """A sampler seed for this process: the study seed mixed with host and process id."""
    return int(np.random.SeedSequence([seed, zlib.crc32(socket.gethostname().encode()), os.getpid()])
               .generate_state(1)[0])


def open_study(config: Config, storage: RDBStorage, dataset_attrs: dict[str, Any]) -> tuple[optuna.Study, bool]:
    """Create the study, or join it if it exists; returns (study, created_here)."""
    metric = METRICS[config.target.metric]
    sampler = optuna.samplers.TPESampler(seed=config.study.seed, n_startup_trials=4)  # the creator's
    pruner = make_pruner(config)
    direction = "maximize" if metric.higher_is_better else "minimize"
    try:
        study = optuna.create_study(
            study_name=config.study.name, storage=storage, direction=direction, sampler=sampler, pruner=pruner
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=config.study.name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
        # A worker joining (or resuming) a study draws with its own seed: workers seeded
        # alike would suggest the same architectures from the same history.
        study.sampler = optuna.samplers.TPESampler(seed=worker_seed(config.study.seed), n_startup_trials=4)
        if study.direction.name.lower() != direction:
            raise UserError(
                f"study {config.study.name!r} optimises {study.direction.name.lower()}, but target.metric "
                f"{config.target.metric!r} needs {direction}; use a new study name"
            )
    if created:
        # the study's uid, its files' folder. Workers open studies under the set-up lock
        # (runner.set_up_study), so a joining worker finds it drawn; a study without one
        # predates uids and keeps its files where they were.
        study.set_user_attr(ATTR_STUDY_UID, uuid.uuid4().hex[:16])
    existing = study.user_attrs.get(ATTR_DATASET_HASH)
    if existing is not None and existing != dataset_attrs[ATTR_DATASET_HASH]:
        raise UserError(
            f"study {config.study.name!r} was run on dataset {existing[:12]} but this config makes dataset "
            f"{dataset_attrs[ATTR_DATASET_HASH][:12]}; the [simulator] section differs from the study's. "
            "Use the study's simulator settings or a new study name."
        )
    return study, created


def record_study_attrs(study: optuna.Study, config: Config, dataset_attrs: dict[str, Any]) -> None:
    """What `report` needs to read the study later without the config file."""
    attrs = {
        **dataset_attrs,
        ATTR_TARGET_METRIC: config.target.metric,
        ATTR_TARGET_THRESHOLD: config.target.threshold,
        ATTR_FAMILIES: config.study.families,
    }
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def enqueue_plan(study: optuna.Study, config: Config) -> int:
    """Enqueue the plan's slots that the study does not hold yet.

    Idempotent, and skipped when the stored plan is this one; a larger budget in the
    config extends it. Not atomic: workers call it under the study's set-up lock
    (``runner.set_up_study``).
    """
    slots = plan(config)
    signature = [[s[k] for k in PLAN_KEYS] for s in slots]
    if study.user_attrs.get(ATTR_PLAN) == signature:
        return 0
    held = {tuple(t.params.get(k) for k in PLAN_KEYS) for t in study.get_trials(deepcopy=False)}
    held |= {
        tuple(t.system_attrs.get(OPTUNA_FIXED_PARAMS, {}).get(k) for k in PLAN_KEYS) for t in study.get_trials(deepcopy=False)
    }
    added = 0
    for slot in slots:
        if tuple(slot[k] for k in PLAN_KEYS) not in held:
            study.enqueue_trial(slot)
            added += 1
    held |= {tuple(slot[k] for k in PLAN_KEYS) for slot in slots}
    held.discard((None, None, None))
    study.set_user_attr(ATTR_PLANNED_TRIALS, len(held))
    study.set_user_attr(ATTR_PLAN, signature)
    return added


def claim_waiting_trial(study: optuna.Study, leave: frozenset[int] | set[int] = frozenset()) -> int | None:
    """Atomically move one WAITING trial to RUNNING; None when the queue is empty.

    ``leave``: first-attempt numbers whose retries this worker does not take (they failed
    here on a transient error; another worker or a rerun takes them)."""
    storage = storage_of(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) in leave:
            continue
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class Heartbeat:
    """Records the trial's heartbeat in the background while the trial trains."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{trial_id}")

    def _record(self) -> None:
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception:  # a database blip: the next beat retries; the grace period covers it
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._record()

    def __enter__(self) -> "Heartbeat":
        # the first beat before the trial runs: Optuna never finds a trial without one stale,
        # so a worker killed before its thread's first beat would leave the trial RUNNING forever
        self._record()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TrialFailed(Exception):
    """The trial cannot finish (e.g. out of memory); recorded as FAIL with this reason."""


class TrialSkipped(Exception):
    """The slot need not run (a shallower depth of its family passed on test). Stored as
    FAIL with ``ATTR_SKIP_REASON`` rather than PRUNED: the sampler ignores failed trials,
    while a pruned one would teach it that the values it drew are bad."""


Objective = Callable[[optuna.Trial], float]


def transient(exc: BaseException) -> bool:
    """A failure of the machine rather than of the network (a full disk, a lost file server
    or connection): the same trial may well succeed when run again."""
    return isinstance(exc, OSError)


def requeue(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Enqueue a failed trial again with the same params, through the storage's own retry
    callback (``RetryHeartbeatStaleTrialCallback``: bounded by ``study.max_retry``, keyed to
    the first attempt, whose checkpoint the retry resumes). False when retries are used up
    or the storage has no retry callback (a reader's)."""
    get_callback = getattr(storage_of(study), "get_heartbeat_stale_trial_callback", None)  # RDB storages have one
    callback = get_callback() if get_callback is not None else None
    if callback is None:
        return False
    callback(study, failed)
    root = first_attempt(failed)
    return any(RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == root and t.number > failed.number
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def unfinished(study: optuna.Study) -> str | None:
    """Why a run that ran out of trials it may take has not finished the plan, or None:
    trials queued again after a transient failure, or no trial finished at all."""
    trials = study.get_trials(deepcopy=False)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    if waiting:
        reasons = sorted({str(t.user_attrs.get(ATTR_FAIL_REASON, "a transient error")) for t in waiting})
        return (f"{len(waiting)} trial(s) failed on a transient error and wait to run again ({'; '.join(reasons)}): "
                "fix the cause and run the same command again")
    if trials and not any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        reasons = sorted({str(t.user_attrs.get(ATTR_FAIL_REASON) or t.user_attrs.get(ATTR_SKIP_REASON)) for t in trials})
        return f"no trial finished: all {len(trials)} failed ({'; '.join(reasons)})"
    return None


def run_worker(
    study: optuna.Study,
    objective: Objective,
    *,
    poll_s: float,
    on_wait: Callable[[int], None] | None = None,
    on_done: Callable[[FrozenTrial], None] | None = None,
) -> int:
    """Run planned trials until none is waiting or running anywhere; returns trials run here."""
    storage = storage_of(study)
    interval = storage.get_heartbeat_interval() or poll_s
    ran = 0
    failed_here: set[int] = set()  # first attempts that failed here on a transient error
    while True:
        fail_stale_trials(study)
        trial_id = claim_waiting_trial(study, leave=failed_here)
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
                trial.set_user_attr(ATTR_FAIL_REASON, str(exc))
                frozen = study.tell(trial, state=TrialState.FAIL)
            except TrialSkipped as exc:
                trial.set_user_attr(ATTR_SKIP_REASON, str(exc))
                frozen = study.tell(trial, state=TrialState.FAIL)
            except (optuna.exceptions.StorageInternalError, SQLAlchemyError):
                raise  # the database stayed away past reconnect_s: the heartbeat will hand the trial on
            except Exception as exc:  # a crash in one trial must not end the study
                reason = f"{type(exc).__name__}: {exc}"[:2000]
                trial.set_user_attr(ATTR_FAIL_REASON, reason)
                frozen = study.tell(trial, state=TrialState.FAIL)
                if transient(exc) and requeue(study, frozen):  # for a rerun or another worker, not this one
                    log.warning("trial %d failed (%s); queued to run again", trial.number, reason)
                    failed_here.add(first_attempt(frozen))
                else:
                    log.exception("trial %d failed", trial.number)
            except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM (search/signals.py)
                trial.set_user_attr(ATTR_FAIL_REASON,
                                    f"interrupted ({describe(interrupt)}); re-enqueued to resume from its checkpoint")
                frozen = study.tell(trial, state=TrialState.FAIL)
                RetryHeartbeatStaleTrialCallback(max_retry=None)(study, frozen)
                raise
        ran += 1
        if on_done is not None:
            on_done(frozen)
