"""A depth passes on test, with confidence: the confirmation step of docs/DESIGN.md.

Validation selects: a depth's *candidate* is its trial with the best validation value.
The candidate is then scored on the test split, which no trial saw, with 95% intervals
from a cluster bootstrap over whole simulations, and the depth **passes only when the
pessimistic end of the test interval clears the threshold** (the lower bound for AUC).
A best-of-N validation figure on a few dozen simulations is optimistic twice over
(selection, and noise); the test bound is neither. Everything that acts on a pass
(skipping deeper depths, the winner) reads the confirmations stored here.

A depth is confirmed once none of its planned trials is waiting or running, by
whichever worker finishes the last of them (idempotent: the result depends only on
the stored network and the data); ``runner`` confirms any depth still left at the end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..study.attrs import ATTR_CONFIRMATION, ATTR_SKIP_REASON, ATTR_SPEC, OPTUNA_FIXED_PARAMS
from .metrics import METRICS, Scorer

if TYPE_CHECKING:
    import torch

UNFINISHED = (TrialState.WAITING, TrialState.RUNNING)


@dataclass
class Confirmation:
    """A depth's candidate on validation and test: ``{metric: [value, low, high]}`` each."""

    family: str
    depth: int
    trial: int
    valid: dict[str, list[float]]
    test: dict[str, list[float]]
    passes: bool
    n_valid: int
    n_test: int
    seeds: list[dict[str, list[float]]] = field(default_factory=list)  # retrained with other seeds: test figures
    spikes: dict[str, int] = field(default_factory=dict)  # output spikes scored, per split
    rate_hz: dict[str, float] = field(default_factory=dict)  # mean output rate scored, per split: what the AUC means

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confirmation_key(family: str, depth: int) -> str:
    return f"{ATTR_CONFIRMATION}:{family}:{depth}"


def confirmations(study: optuna.Study) -> dict[tuple[str, int], Confirmation]:
    """Every stored confirmation of the study, by (family, depth)."""
    prefix = f"{ATTR_CONFIRMATION}:"
    found = {}
    for key, value in study.user_attrs.items():
        if key.startswith(prefix) and isinstance(value, dict):
            record = Confirmation(**value)
            found[(record.family, record.depth)] = record
    return found


def confirmed_passes(study: optuna.Study, family: str) -> list[int]:
    """Depths of ``family`` whose candidate passed on test."""
    return sorted(depth for (fam, depth), c in confirmations(study).items() if fam == family and c.passes)


def slot_of(trial: FrozenTrial) -> tuple[Any, Any]:
    """(family, depth) of a trial; a waiting one has only the values it was enqueued with."""
    params = trial.params or trial.system_attrs.get(OPTUNA_FIXED_PARAMS, {})
    return params.get("family"), params.get("depth")


def depth_finished(study: optuna.Study, family: str, depth: int) -> bool:
    """No planned trial of this depth is waiting or running (on any worker)."""
    return not any(slot_of(t) == (family, depth) for t in study.get_trials(deepcopy=False, states=UNFINISHED))


def candidate(study: optuna.Study, family: str, depth: int, metric: str) -> FrozenTrial | None:
    """The depth's finished trial with the best validation value (skipped ones excluded)."""
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if slot_of(t) == (family, depth) and t.value is not None and t.value == t.value
        and ATTR_SKIP_REASON not in t.user_attrs
    ]
    return max(done, key=lambda t: sign * t.value, default=None)


def score_network(model, data, settings, saved: dict) -> Scorer:
    from ..training.train import predict  # here, not at import: `report` reads confirmations without torch

    pred = predict(model, data, settings, saved["v_mean"], saved["v_std"])
    return Scorer(pred.spike_prob, pred.spike_true, pred.v_pred, pred.v_true)


def with_intervals(scorer: Scorer, n_boot: int, seed: int) -> dict[str, list[float]]:
    point, interval = scorer.metrics(), scorer.intervals(n_boot, seed=seed)
    return {name: [point[name], *interval[name]] for name in point}


def confirm_depth(ctx, study: optuna.Study, family: str, depth: int) -> Confirmation | None:
    """Score the depth's candidate on validation and test and store the verdict
    (None when the depth has no finished trial or its network file is gone)."""
    config = ctx.config
    metric = METRICS[config.target.metric]
    best = candidate(study, family, depth, config.target.metric)
    if best is None:
        return None
    path = ctx.workspace.model(best.number)
    if not path.exists():
        return None
    stored = confirmations(study).get((family, depth))
    if stored is not None and stored.trial == best.number:
        return stored
    from ..study.workspace import load_model  # torch: only where a candidate is scored

    model, saved = load_model(path, ctx.device)
    valid, test = ctx.split("valid"), ctx.split("test")
    seed, n_boot = config.study.seed, config.target.bootstrap
    scorers = {split: score_network(model, data, config.training, saved) for split, data in (("valid", valid), ("test", test))}
    record = Confirmation(
        family=family,
        depth=depth,
        trial=best.number,
        valid=with_intervals(scorers["valid"], n_boot, seed),
        test=with_intervals(scorers["test"], n_boot, seed),
        passes=False,
        n_valid=len(valid),
        n_test=len(test),
        spikes={split: int(scorer.spikes.sum()) for split, scorer in scorers.items()},
        rate_hz={split: round(scorer.mean_rate_hz(), 4) for split, scorer in scorers.items()},
    )
    record.passes = _clears(record.test, metric, config.target.threshold)
    for k in range(1, config.target.confirm_seeds + 1):
        if not record.passes:
            break
        again = _retrained(ctx, best, seed_offset=k)
        record.seeds.append(with_intervals(score_network(again, test, config.training, saved), n_boot, seed))
        record.passes = _clears(record.seeds[-1], metric, config.target.threshold)
    study.set_user_attr(confirmation_key(family, depth), record.to_dict())
    return record


def _clears(figures: dict[str, list[float]], metric, threshold: float) -> bool:
    """The pessimistic end of the metric's interval meets the threshold (NaN never does)."""
    bound = metric.bound(tuple(figures[metric.name][1:]))
    return bool(bound == bound and metric.passes(bound, threshold))


def _retrained(ctx, trial: FrozenTrial, seed_offset: int) -> torch.nn.Module:
    """The candidate's architecture and learning rate trained again from another seed: a
    pass that holds for one initialisation only is luck, not an answer."""
    from ..training.train import retrain, trial_seed

    config = ctx.config
    metric = METRICS[config.target.metric]
    trainer = retrain(trial.user_attrs[ATTR_SPEC], ctx.inputs, ctx.split("train"), ctx.split("valid"), config.training,
                      trial.params["lr"], trial_seed(config.study.seed, trial.number) + 7919 * seed_offset,
                      (metric.name, metric.higher_is_better))
    return trainer.model.eval()
