"""A depth stops once its answer is settled: the "Settling a depth" step of docs/DESIGN.md.

The plan gives every family and depth ``trials_per_depth`` trials, but a depth's verdict
is often clear long before they are spent. After each trial of a depth finishes, its
*candidate* (best on validation) is scored on the validation split with a 95% interval
(the cluster bootstrap over whole simulations used on test), and the depth is
**settled** when that interval lies clearly on one side of the threshold:

- ``above``: the interval clears the threshold with room for test's: its pessimistic
  end, moved on by its own half-width, still clears it (for AUC: 2·low − value ≥
  threshold). Clearing with the pessimistic end alone is a coin toss on test, whose
  interval is as wide: were the network's true value at validation's lower end, test's
  lower bound would sit a half-width below that. With the room, more configurations
  could only widen a margin already wide enough, so the depth goes to the test split
  now (its one look there, as at the end of a depth) and its remaining trials are
  skipped. Should test still disagree, the depth does not pass: the report shows the
  disagreement rather than looking at test again with another candidate.
  The same test ends a trial's training at the first epoch whose network clears it
  (``target_cleared``).
- ``below``: once ``study.settle_after`` of its trials have finished, even the interval's
  optimistic end misses the threshold: the best network the depth has produced falls
  short at the precision the validation split allows, so the rest of its budget would
  be spent to confirm a miss. Its remaining trials are skipped; the candidate is still
  confirmed on test when the depth ends.

Deciding reads validation only: the test split is still scored once per depth candidate.
Settled depths are stored in the study (``settled:<family>:<depth>``), so every worker,
and a resumed run, skips the same slots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import optuna
from optuna.trial import TrialState

from ..study.attrs import ATTR_SETTLED, ATTR_SKIP_REASON
from .confirm import candidate, score_network, slot_of, with_intervals
from .metrics import METRICS, Metric, Scorer

if TYPE_CHECKING:
    from ..config import Config
    from ..training.train import Prediction

OPEN, ABOVE, BELOW = "open", "above", "below"


@dataclass
class Settlement:
    """A depth's candidate on validation, ``valid = [value, low, high]``, after ``finished``
    trials, and where that interval lies: ``above`` or ``below`` the threshold, or
    ``open`` (across it, or below too early: not settled yet)."""

    family: str
    depth: int
    trial: int
    valid: list[float]
    finished: int
    verdict: str

    @property
    def settled(self) -> bool:
        return self.verdict != OPEN

    def reason(self, metric: str, threshold: float) -> str:
        """Why the depth's remaining trials are skipped, for the run's log and the trial."""
        value, low, high = self.valid
        where = (f"clears {threshold} with room for the test interval's width" if self.verdict == ABOVE
                 else f"lies wholly below {threshold}")
        return (f"{self.family} depth {self.depth} is settled: candidate trial {self.trial}'s validation {metric} "
                f"{value:.4f} [{low:.4f}, {high:.4f}] {where} after {self.finished} trial(s)")


def settlement_key(family: str, depth: int) -> str:
    return f"{ATTR_SETTLED}:{family}:{depth}"


def settlement(study: optuna.Study, family: str, depth: int) -> Settlement | None:
    """The depth's stored settlement check, or None when none was made."""
    stored = study.user_attrs.get(settlement_key(family, depth))
    return Settlement(**stored) if isinstance(stored, dict) else None


def finished_trials(study: optuna.Study, family: str, depth: int) -> int:
    """Trials of the depth that trained to the end or were pruned (skipped ones excluded)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
               if slot_of(t) == (family, depth) and ATTR_SKIP_REASON not in t.user_attrs)


def settle(ctx: Any, study: optuna.Study, family: str, depth: int) -> Settlement | None:
    """Check whether the depth's answer is settled and store the check (None when
    ``study.stop_settled_depths`` is off or the depth has no candidate yet). A settled
    depth stays settled; the candidate is scored once (its figures are kept)."""
    config = ctx.config
    if not config.study.stop_settled_depths:
        return None
    stored = settlement(study, family, depth)
    if stored is not None and stored.settled:
        return stored
    metric = METRICS[config.target.metric]
    best = candidate(study, family, depth, metric.name)
    if best is None:
        return None
    if stored is not None and stored.trial == best.number:
        valid = stored.valid
    else:
        path = ctx.workspace.model(best.number)
        if not path.exists():
            return None
        from ..study.workspace import load_model  # torch: only where a candidate is scored

        model, saved = load_model(path, ctx.device)
        scorer = score_network(model, ctx.split("valid"), config.training, saved)
        valid = with_intervals(scorer, config.target.bootstrap, config.study.seed)[metric.name]
    finished = finished_trials(study, family, depth)
    verdict = OPEN
    if _above(valid, metric, config.target.threshold):
        verdict = ABOVE
    elif finished >= config.study.settle_after and _below(valid, metric, config.target.threshold):
        verdict = BELOW
    record = Settlement(family, depth, best.number, [float(v) for v in valid], finished, verdict)
    study.set_user_attr(settlement_key(family, depth), asdict(record))
    return record


def _above(figures: list[float], metric: Metric, threshold: float) -> bool:
    """``[value, low, high]``'s pessimistic end, moved on by the distance from the value to
    it, passes the threshold: a test interval as wide around that end would (NaN never)."""
    room = 2 * metric.bound((figures[1], figures[2])) - figures[0]
    return bool(room == room and metric.passes(room, threshold))


def _below(figures: list[float], metric: Metric, threshold: float) -> bool:
    """``[value, low, high]`` lies wholly on the failing side of the threshold."""
    optimistic = figures[2] if metric.higher_is_better else figures[1]
    return bool(optimistic == optimistic and not metric.passes(optimistic, threshold))


def target_cleared(config: Config) -> Callable[[Prediction], bool] | None:
    """For a trial in training: does the network it holds now clear the target on validation
    with room for the test interval (what settles a depth as passing)? Bootstrapped only once the
    point value clears the threshold, so a network short of it costs nothing. None when
    ``study.stop_settled_depths`` is off."""
    if not config.study.stop_settled_depths:
        return None
    metric, threshold = METRICS[config.target.metric], config.target.threshold

    def enough(prediction: Prediction) -> bool:
        point = prediction.metrics.get(metric.name, float("nan"))
        if not (point == point and metric.passes(point, threshold)):
            return False
        scorer = Scorer(prediction.spike_prob, prediction.spike_true, prediction.v_pred, prediction.v_true)
        low, high = scorer.intervals(config.target.bootstrap, seed=config.study.seed)[metric.name]
        return _above([point, low, high], metric, threshold)

    return enough
