"""The study machinery on a real SQLite storage: plan, claiming, pruning, retries."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from neurosearch.search.config import load_config
from neurosearch.search.study.plan import (
    DepthHalvingPruner,
    DepthMedianPruner,
    TrialSkipped,
    enqueue_plan,
    open_study,
    plan,
    run_worker,
    suggest_slot,
    worker_seed,
)
from neurosearch.search.study.workspace import open_storage

DATA = {"dataset_hash": "abc", "dataset_path": "/tmp/x"}


def make_config(tmp_path: Path, *extra: str):
    overrides = [
        f'study.storage="sqlite:///{tmp_path}/optuna.db"',
        "study.heartbeat_s=1",
        "study.grace_s=3",
        "spaces.tcn.depths=[1, 2, 3]",
        *extra,
    ]
    return load_config(None, overrides)


def toy_objective(trial: optuna.Trial) -> float:
    _, depth = suggest_slot(trial, ["tcn"])
    return 0.9 + depth / 100


def test_plan_is_shallow_first_with_repeats(tmp_path: Path) -> None:
    config = make_config(tmp_path, "study.trials_per_depth=2")
    slots = [(s["family"], s["depth"], s["repeat"]) for s in plan(config)]
    assert slots == [("tcn", d, r) for d in (1, 2, 3) for r in (0, 1)]


def test_enqueue_is_idempotent_and_extends(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    study, created = open_study(config, open_storage(config), DATA)
    assert created
    assert enqueue_plan(study, config) == 6
    assert enqueue_plan(study, config) == 0
    again, created = open_study(config, open_storage(config), DATA)
    assert not created and len(again.trials) == 6
    bigger = make_config(tmp_path, "study.trials_per_depth=3")
    assert enqueue_plan(again, bigger) == 3
    assert again.user_attrs["planned_trials"] == 9


def test_worker_runs_exactly_the_plan(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    study, _ = open_study(config, open_storage(config), DATA)
    enqueue_plan(study, config)
    assert run_worker(study, toy_objective, poll_s=0.1) == 6
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 6
    assert run_worker(study, toy_objective, poll_s=0.1) == 0  # resume: nothing left, nothing duplicated


def test_skipped_slots_are_failed_with_a_reason_not_pruned(tmp_path: Path) -> None:
    """TPE reads a pruned trial's drawn values as bad ones; a skipped slot drew none."""
    from neurosearch.search.answer.report import build_report

    config = make_config(tmp_path)
    study, _ = open_study(config, open_storage(config), DATA)
    enqueue_plan(study, config)

    def skip_deep(trial: optuna.Trial) -> float:
        _, depth = suggest_slot(trial, ["tcn"])
        if depth > 1:
            raise TrialSkipped("tcn already passes at depth 1 (confirmed on the test split)")
        return 0.999

    assert run_worker(study, skip_deep, poll_s=0.1) == 6
    skipped = [t for t in study.trials if t.params["depth"] > 1]
    assert {t.state for t in skipped} == {TrialState.FAIL}
    assert all(t.user_attrs["skip_reason"].startswith("tcn already passes") for t in skipped)
    assert all(set(t.params) == {"family", "depth", "repeat"} for t in skipped)  # nothing drawn
    rows = {r.depth: r for r in build_report(study).rows}
    assert (rows[2].skipped, rows[2].failed, rows[3].skipped) == (2, 0, 2)


def test_every_worker_process_draws_with_its_own_sampler_seed() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        other = pool.apply(worker_seed, (0,))
    assert worker_seed(0) == worker_seed(0) != other


def test_dataset_mismatch_is_refused(tmp_path: Path) -> None:
    from neurosearch.search.errors import UserError
    from neurosearch.search.study.plan import record_study_attrs

    config = make_config(tmp_path)
    study, _ = open_study(config, open_storage(config), DATA)
    record_study_attrs(study, config, DATA)
    with pytest.raises(UserError, match="dataset"):
        open_study(config, open_storage(config), {"dataset_hash": "other", "dataset_path": "/tmp/y"})


def test_unreachable_database_names_host_not_password() -> None:
    from neurosearch.search.errors import UserError

    config = load_config(None, ['study.storage="postgresql://bob:s3cret@127.0.0.1:1/nodb"'])
    with pytest.raises(UserError) as info:
        open_storage(config)
    assert "127.0.0.1" in str(info.value) and "s3cret" not in str(info.value)


def _finished(study: optuna.Study, depth: int, values: list[float], tell: bool = True) -> optuna.Trial:
    study.enqueue_trial({"family": "tcn", "depth": depth})
    trial = study.ask()
    suggest_slot_like(trial)
    for step, value in enumerate(values):
        trial.report(value, step)
    if tell:
        study.tell(trial, values[-1])
    return trial


def suggest_slot_like(trial: optuna.Trial) -> None:
    trial.suggest_categorical("family", ["tcn"])
    trial.suggest_int("depth", 1, 64)


def test_depth_median_pruner_compares_within_a_depth() -> None:
    study = optuna.create_study(direction="maximize")
    pruner = DepthMedianPruner(warmup_steps=0, higher_is_better=True)
    _finished(study, 1, [0.60])
    _finished(study, 1, [0.70])
    _finished(study, 3, [0.95])
    # 0.66 is far below depth 3's 0.95 but above its own depth's median (0.65): kept
    _finished(study, 1, [0.66], tell=False)
    assert not pruner.prune(study, study.trials[-1])
    # 0.61 is below its depth's median: pruned
    _finished(study, 1, [0.61], tell=False)
    assert pruner.prune(study, study.trials[-1])
    # the first trial at a new depth has no peers: kept
    _finished(study, 2, [0.1], tell=False)
    assert not pruner.prune(study, study.trials[-1])
    # warm-up epochs are never pruned
    assert not DepthMedianPruner(warmup_steps=1, higher_is_better=True).prune(study, study.trials[-2])


def test_depth_median_pruner_waits_for_peers_and_uses_the_best_epoch_so_far() -> None:
    study = optuna.create_study(direction="maximize")
    pruner = DepthMedianPruner(warmup_steps=0, higher_is_better=True)
    _finished(study, 1, [0.60, 0.80])
    _finished(study, 1, [0.10], tell=False)
    assert not pruner.prune(study, study.trials[-1])  # one peer is no median
    _finished(study, 1, [0.70, 0.70])
    # peers' best by epoch 1: 0.80 and 0.70 (median 0.75); this one reached 0.78 at epoch 0
    # and dipped to 0.50 at epoch 1: its best so far is above the median, kept
    _finished(study, 1, [0.78, 0.50], tell=False)
    assert not pruner.prune(study, study.trials[-1])
    _finished(study, 1, [0.72, 0.74], tell=False)
    assert pruner.prune(study, study.trials[-1])


def _halving_history(pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study, bool]:
    """Depth 3 far better at the first rung, then the first depth-1 trial reaches it:
    the study, and whether that trial is stopped."""
    study = optuna.create_study(direction="maximize")
    for value in (0.97, 0.96, 0.95):
        _finished(study, 3, [value, value], tell=False)
        pruner.prune(study, study.trials[-1])
    _finished(study, 1, [0.50, 0.60], tell=False)
    return study, pruner.prune(study, study.trials[-1])


def test_depth_halving_pruner_promotes_the_best_of_its_own_depth_only() -> None:
    # Optuna's successive halving, rungs at epochs 1, 3 (steps 1, 3), keeping the best third;
    # unscoped, it stops the shallow trial for being worse than deeper ones
    assert _halving_history(optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))[1]
    pruner = DepthHalvingPruner(min_epochs=1, reduction_factor=3)
    study, stopped = _halving_history(pruner)
    assert not stopped  # the first of its own depth at the rung: promoted
    for value in (0.70, 0.80):  # better depth-1 peers at the rung: each promoted
        _finished(study, 1, [0.5, value], tell=False)
        assert not pruner.prune(study, study.trials[-1])
    _finished(study, 1, [0.5, 0.55], tell=False)  # not in the best third of its depth's rung: stopped
    assert pruner.prune(study, study.trials[-1])
    _finished(study, 2, [0.1], tell=False)  # before the first rung nothing is judged
    assert not pruner.prune(study, study.trials[-1])


def _stuck_worker(storage_url: str, ready: "multiprocessing.synchronize.Event") -> None:
    config = load_config(None, [f'study.storage="{storage_url}"', "study.heartbeat_s=1", "study.grace_s=3",
                                "spaces.tcn.depths=[1, 2, 3]"])
    study, _ = open_study(config, open_storage(config), DATA)

    def hang(trial: optuna.Trial) -> float:
        suggest_slot(trial, ["tcn"])
        ready.set()
        time.sleep(600)
        return 0.0

    run_worker(study, hang, poll_s=0.1)


def test_killed_worker_trial_is_retried(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    study, _ = open_study(config, open_storage(config), DATA)
    enqueue_plan(study, config)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_stuck_worker, args=(config.study.storage, ready))
    proc.start()
    assert ready.wait(60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    ran = run_worker(study, toy_objective, poll_s=0.2)
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and ran == 6
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params["depth"] == failed[0].params["depth"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6


def test_ctrl_c_reenqueues_the_running_trial(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    study, _ = open_study(config, open_storage(config), DATA)
    enqueue_plan(study, config)

    def interrupted(trial: optuna.Trial) -> float:
        suggest_slot(trial, ["tcn"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, interrupted, poll_s=0.1)
    first = study.trials[0]
    assert first.state == TrialState.FAIL and "interrupted" in first.user_attrs["fail_reason"]
    assert run_worker(study, toy_objective, poll_s=0.1) == 6
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == first.number]
    assert retry and retry[0].state == TrialState.COMPLETE


def test_same_seed_builds_the_same_network_whatever_ran_before(tmp_path: Path) -> None:
    """Issue 10: the same study seed gave AUC 0.869 / 0.885 / 0.590 because the model was
    built before the trial's seed was set; the initial weights must follow the seed alone."""
    import types

    import torch

    from neurosearch.search.training.objective import _build
    from neurosearch.spaces import InputMeta, get_family

    config = make_config(tmp_path)
    ctx = types.SimpleNamespace(config=config, inputs=InputMeta(12, tuple(i % 3 for i in range(12))))
    family = get_family("tcn")
    drawn = optuna.create_study().ask()
    family.sample(drawn, config.space("tcn"), 2)  # any architecture of the space, drawn once
    weights = []
    for noise in (1, 1000):
        torch.rand(noise)  # whatever the process drew before must not matter
        trial = optuna.trial.FixedTrial(drawn.params, number=3)
        candidate = _build(trial, ctx, family, depth=2, lr=1e-3)
        weights.append([p.detach().clone() for p in candidate.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
