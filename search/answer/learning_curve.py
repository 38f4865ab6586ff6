"""How much ground truth a pass would take: a learning curve, fitted and extrapolated.

A study that does not pass should still say how far it is. The best network of a
depth is retrained on nested parts of the training split (the first 1/8, 1/4, 1/2 and
all of it, in the split's stable order); its validation error (1 − AUC, or the metric
itself for a lower-is-better one) against simulated seconds of training data is fitted
by a power law, ``error = a · seconds^b``, the usual shape of such curves. Inverting it at
the threshold gives the data a pass would need, and with the measured NEURON and
training costs, core-hours and training hours. With four points the fit is rough:
``weak`` says when not to trust it (the error does not fall with data, the fit is poor,
or the answer lies more than 10× beyond the data measured).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import UserError
from ..study.attrs import ATTR_SPEC, ATTR_TRAIN_SECONDS, ATTR_VAL_METRICS
from .metrics import METRICS

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
"""Parts of the training split a learning curve is measured at."""
FAR = 10.0
"""An extrapolation further than this factor beyond the largest measured size is weak."""
HOPELESS = 1000.0
"""Beyond this factor the report gives no figure: only that more data alone will not do."""


@dataclass
class LearningCurve:
    """Measured points, the fitted power law, and what it says a pass needs."""

    family: str
    depth: int
    trial: int
    metric: str
    threshold: float
    train_seconds: list[float]  # simulated seconds of training data per point
    values: list[float]  # validation metric per point
    exponent: float | None = None  # b in error = a * seconds^b (negative: more data helps)
    r2: float | None = None
    needed_seconds: float | None = None  # simulated seconds of training data for the threshold
    neuron_core_hours: float | None = None  # NEURON cost of simulating that much (one core)
    train_hours: float | None = None  # training time at that size, on the device that measured it
    weak: bool = True
    why_weak: str = ""
    #: how far the candidate's test interval reaches past its value on the failing side: a
    #: pass is judged on that bound, so the curve is inverted at threshold ± margin (the
    #: point a pass needs, with a test split as large as this one), not at the threshold
    margin: float = 0.0

    @property
    def needed_value(self) -> float:
        """The point value a pass needs: the threshold moved by the test interval's margin."""
        return self.threshold + self.margin if self.higher_is_better else self.threshold - self.margin

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better

    def to_dict(self) -> dict:
        return asdict(self)


def _error(value: float, higher_is_better: bool) -> float:
    return 1.0 - value if higher_is_better else value


def fit(
    curve: LearningCurve,
    higher_is_better: bool,
    neuron_wall_s_per_simulated_s: float | None = None,
    train_wall_s_at_largest: float | None = None,
) -> LearningCurve:
    """Fit ``curve``'s points (in place) and extrapolate to its threshold."""
    x = np.asarray(curve.train_seconds, dtype=np.float64)
    err = np.asarray([_error(v, higher_is_better) for v in curve.values], dtype=np.float64)
    target = _error(curve.needed_value, higher_is_better)
    ok = np.isfinite(err) & (err > 0) & (x > 0)
    if ok.sum() < 3 or target <= 0:
        curve.why_weak = "fewer than three usable points" if ok.sum() < 3 else "the threshold leaves no error to fit"
        return curve
    lx, ly = np.log(x[ok]), np.log(err[ok])
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (intercept + slope * lx)
    total = np.sum((ly - ly.mean()) ** 2)
    curve.exponent = float(slope)
    curve.r2 = float(1.0 - np.sum(residual**2) / total) if total > 0 else 0.0
    reasons = []
    if slope >= -0.02:
        reasons.append(f"the error does not fall with more data (exponent {slope:+.2f})")
    else:
        needed = math.exp((math.log(target) - intercept) / slope)
        curve.needed_seconds = float(needed)
        if neuron_wall_s_per_simulated_s:
            curve.neuron_core_hours = float(needed * neuron_wall_s_per_simulated_s / 3600.0)
        if train_wall_s_at_largest:
            curve.train_hours = float(train_wall_s_at_largest * needed / x.max() / 3600.0)
        if needed > FAR * x.max():
            reasons.append(f"it extrapolates {needed / x.max():.0f}× beyond the data measured")
        reasons += _flattening(lx, ly, slope, math.log(target))
    if curve.r2 < 0.8:
        reasons.append(f"the power law fits poorly (R² {curve.r2:.2f})")
    curve.weak = bool(reasons)
    curve.why_weak = "; ".join(reasons)
    return curve


def _flattening(lx: np.ndarray, ly: np.ndarray, slope: float, log_target: float) -> list[str]:
    """A reason when the curve's last step falls far slower than the fitted power law (the
    curve bends towards a floor, and the fit, pulled by the small-data points, promises a
    pass too soon), with what the last step's own slope would need."""
    if len(lx) < 3 or lx[-1] <= lx[-2]:
        return []
    last = float((ly[-1] - ly[-2]) / (lx[-1] - lx[-2]))
    if last <= slope / 2:
        return []
    if last >= -0.02:
        return [f"the curve has stopped falling (its last step: seconds^{last:+.2f})"]
    needed = math.exp(lx[-1] + (log_target - ly[-1]) / last)
    return [f"the curve flattens (its last step falls as seconds^{last:.2f}, at which a pass would need "
            f"≈ {needed:,.0f} simulated seconds)"]


def describe(curve: LearningCurve) -> str:
    """One or two lines for the report."""
    points = ", ".join(f"{s:,.0f} s → {v:.4f}" for s, v in zip(curve.train_seconds, curve.values))
    head = f"{curve.family} depth {curve.depth} (trial {curve.trial}) learning curve: {points}"
    if curve.needed_seconds is None:
        return f"{head}\n  no extrapolation: {curve.why_weak}"
    if curve.needed_seconds > HOPELESS * max(curve.train_seconds):
        return (f"{head}\n  fit error ∝ seconds^{curve.exponent:.2f} (R² {curve.r2:.2f}): {curve.metric} "
                f"{curve.threshold} is out of reach by more data alone at this depth (it would take more than "
                f"{HOPELESS:,.0f}× the data measured)")
    cost = []
    if curve.neuron_core_hours is not None:
        cost.append(f"≈ {curve.neuron_core_hours:,.1f} NEURON core-hours")
    if curve.train_hours is not None:
        cost.append(f"≈ {curve.train_hours:,.1f} h of training on this device")
    goal = f"{curve.metric} {curve.threshold}" + (
        f" on the test bound (a point of ≈ {curve.needed_value:.4f}: the test interval reaches {curve.margin:.4f} "
        "past the candidate)" if curve.margin else "")
    text = (f"{head}\n  fit error ∝ seconds^{curve.exponent:.2f} (R² {curve.r2:.2f}): {goal} "
            f"needs ≈ {curve.needed_seconds:,.0f} simulated seconds of training data" + (f" ({', '.join(cost)})" if cost else ""))
    if curve.weak:
        text += f"\n  weak extrapolation: {curve.why_weak}"
    return text


def _scaled(settings: Any, fraction: float) -> Any:
    """Training settings for a part of the training split: an epoch stays the same share of
    a pass over the data (unset ``steps_per_epoch``: one pass, which shrinks with the part
    by itself; a set one shrinks with it), so a point costs in proportion to its data."""
    if settings.steps_per_epoch is None:
        return settings
    return settings.model_copy(update={"steps_per_epoch": max(1, round(settings.steps_per_epoch * fraction))})


def measure(ctx: Any, trial: Any, margin: float = 0.0, fractions: tuple[float, ...] = FRACTIONS) -> LearningCurve:
    """Retrain a finished trial's architecture (same learning rate and seed) on nested
    parts of the training split; the full-data point is the trial itself. ``ctx`` is the
    study's ``StudyContext``, ``trial`` a ``FrozenTrial``."""
    from ..training.data import SplitTensors  # here, not at import: `report` reads curves without torch
    from ..training.train import retrain, trial_seed

    config = ctx.config
    metric = config.target.metric
    higher = METRICS[metric].higher_is_better
    spec = trial.user_attrs[ATTR_SPEC]
    seconds_per_sim = ctx.dataset.duration_ms / 1000.0
    n_train = len(ctx.dataset.indices("train"))
    curve = LearningCurve(spec["family"], int(spec["depth"]), trial.number, metric, config.target.threshold, [], [],
                          margin=margin)
    for fraction in fractions:
        if fraction >= 1.0:
            n, value = n_train, trial.user_attrs[ATTR_VAL_METRICS][metric]
        else:
            n = max(2, round(n_train * fraction))
            try:
                part = SplitTensors(ctx.dataset, "train", ctx.device, limit=n)
            except UserError:  # too few spikes in so small a part: no point there
                continue
            trainer = retrain(spec, ctx.inputs, part, ctx.split("valid"), _scaled(config.training, fraction),
                              trial.params["lr"], trial_seed(config.study.seed, trial.number), (metric, higher))
            value = trainer.best_metrics[metric]
        curve.train_seconds.append(n * seconds_per_sim)
        curve.values.append(float(value))
    return fit(curve, higher, ctx.dataset.wall_s_per_simulated_s, trial.user_attrs.get(ATTR_TRAIN_SECONDS))
