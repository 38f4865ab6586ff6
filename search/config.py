"""search.toml: loading, validation and command-line overrides.

Every section is a pydantic model with ``extra="forbid"`` so a misspelt key is an
error that names it, not a silently ignored setting. Relative paths (the SQLite
storage file, the work folder, the MLflow store, a custom cell's files) resolve
against the folder of the config file, so a study runs the same from any working
directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from neurosearch.simulators import SimulationSpec
from neurosearch.spaces import FAMILIES, get_family

from .answer.metrics import METRICS
from .errors import UserError, looks_like_url, mask_secrets, mask_url, sqlite_file

#: a study name becomes a folder and file names under work_dir: a safe set of characters
#: (no path separators, no leading dot) and a length any file system takes
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STUDY_NAME_MAX = 100


def safe_name(what: str, name: str) -> str:
    """``name`` if it can name a folder and a database row (the study, the experiment):
    no path separators, no dot-files, nothing a shell or a URL would mangle."""
    if len(name) > STUDY_NAME_MAX or not STUDY_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else f"{name[:40]}… ({len(name)} characters)"
        raise ValueError(
            f"{what} {shown!r} is not allowed: use 1 to {STUDY_NAME_MAX} letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudySection(_Section):
    """Which study, where it is stored, and how much it may spend."""

    name: str = "l5pc-nmda"
    storage: str = "sqlite:///work/optuna.db"
    work_dir: Path = Path("work")
    families: list[str] = Field(default_factory=lambda: ["tcn"], min_length=1)
    trials_per_depth: int = Field(2, ge=1)
    seed: int = 0
    skip_deeper_once_passing: bool = True
    stop_settled_depths: bool = Field(
        True, description="a depth stops once its candidate clears the threshold on validation with room for the test "
        "interval (95% lower end minus its half-width; it is then confirmed on test) or, after settle_after finished "
        "trials, its whole validation interval lies below it")
    settle_after: int = Field(2, ge=1, description="trials a depth finishes before it may be settled as short")
    learning_curve: bool = Field(
        True, description="when no family passes, measure the learning curve of the depth closest to the target to say "
        "what a pass needs"
    )
    heartbeat_s: int = Field(10, ge=1)
    grace_s: int = Field(40, ge=2)
    max_retry: int = Field(3, ge=0)
    reconnect_s: float = Field(180.0, ge=0)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return safe_name("study name", name)

    @field_validator("families")
    @classmethod
    def _known_families(cls, families: list[str]) -> list[str]:
        for name in families:
            get_family_or_raise(name)
        if len(set(families)) != len(families):
            raise ValueError("families are listed twice")
        return families

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> "StudySection":
        if self.grace_s <= self.heartbeat_s:
            raise ValueError("grace_s must be larger than heartbeat_s")
        return self


class TrackingSection(_Section):
    """MLflow: a local store by default, a tracking server or SQL URI when shared."""

    uri: str = "sqlite:///mlflow/mlflow.db"
    artifacts: str = "mlflow/artifacts"
    experiment: str | None = None

    @field_validator("experiment")
    @classmethod
    def _safe_experiment(cls, name: str | None) -> str | None:
        return None if name is None else safe_name("experiment name", name)  # a folder under `artifacts`


class TargetSection(_Section):
    """What 'passing' means: the metric whose 95% test-split bound must clear the threshold."""

    metric: str = "spike_auc"
    threshold: float = 0.99
    bootstrap: int = Field(1000, ge=100, le=100_000, description="cluster-bootstrap resamples per 95% interval")
    confirm_seeds: int = Field(
        0, ge=0, le=20, description="a passing candidate is retrained with this many more seeds; each must pass too"
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric

    @model_validator(mode="after")
    def _threshold_in_range(self) -> "TargetSection":
        if self.metric == "voltage_rmse":
            if self.threshold <= 0:
                raise ValueError("threshold: an RMSE threshold (mV) must be positive")
        elif not 0 < self.threshold <= 1:
            raise ValueError(f"threshold: {self.metric} lies in (0, 1]; a threshold of {self.threshold} is meaningless")
        return self


class TrainingSection(_Section):
    """How each sampled network is trained; identical for every trial of a study."""

    epochs: int = Field(5, ge=1, description="most epochs per trial (early stopping may end it sooner)")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="optimiser steps per epoch; unset = one pass over the training split's scored ms"
    )
    batch_size: int = Field(8, ge=1)
    window_ms: int = Field(500, ge=10)
    burn_in_ms: int = Field(100, ge=0)
    learning_rate: tuple[float, float] = (1e-3, 1e-2)
    weight_decay: float = Field(0.01, ge=0, description="AdamW's decoupled weight decay")
    schedule: Literal["constant", "one-cycle"] = "constant"
    patience: int = Field(3, ge=1, description="epochs without a better validation value before a trial stops")
    voltage_weight: float = Field(0.2, ge=0)
    device: str = "auto"
    amp: Literal["off", "bf16"] = "off"
    pruning: Literal["depth-median", "depth-halving", "none"] = Field(
        "depth-median", description="depth-median: below the median of its family and depth after the warm-up; "
        "depth-halving: successive halving among the trials of its family and depth (rungs at prune_warmup_epochs × "
        "halving_factor^k epochs); none")
    prune_warmup_epochs: int = Field(2, ge=0)
    halving_factor: int = Field(3, ge=2, description="depth-halving: a rung keeps the best 1/halving_factor")

    @field_validator("learning_rate")
    @classmethod
    def _ordered(cls, lr: tuple[float, float]) -> tuple[float, float]:
        if not 0 < lr[0] <= lr[1]:
            raise ValueError("learning_rate must be [low, high] with 0 < low <= high")
        return lr

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise ValueError("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return device

    @model_validator(mode="after")
    def _burn_in_fits(self) -> "TrainingSection":
        if self.burn_in_ms >= self.window_ms:
            raise ValueError("burn_in_ms must be shorter than window_ms")
        return self


class DataSection(_Section):
    """Ground truth the user already holds, imported with ``neurosearch import``."""

    dataset: Path | None = Field(
        None, description="a dataset folder made by `neurosearch import`: the study trains on it, and [simulator] "
        "is not used"
    )


#: ``[spaces.<family>]``: one optional section per registered family, each validated by
#: the family's own Space model (so errors carry the full key path, spaces.tcn.widths).
SpacesSection = create_model(
    "SpacesSection",
    __config__=ConfigDict(extra="forbid"),
    **{name: (Optional[family.Space], None) for name, family in FAMILIES.items()},
)


class Config(_Section):
    """The whole of search.toml."""

    study: StudySection = StudySection()
    tracking: TrackingSection = TrackingSection()
    target: TargetSection = TargetSection()
    training: TrainingSection = TrainingSection()
    simulator: SimulationSpec = SimulationSpec()
    data: DataSection = DataSection()
    spaces: SpacesSection = Field(default_factory=SpacesSection)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _space_per_family(self) -> "Config":
        for name in self.study.families:
            if getattr(self.spaces, name) is None:
                setattr(self.spaces, name, get_family(name).Space())
        if self.data.dataset is None and self.simulator.duration_ms - self.simulator.discard_ms <= self.training.window_ms:
            raise ValueError(
                "simulator: recorded length after the discard (duration_ms - discard_ms) must exceed training.window_ms"
            )
        return self

    def space(self, family: str) -> BaseModel:
        return getattr(self.spaces, family)

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.study.name


def get_family_or_raise(name: str):
    """The family, or a ValueError that pydantic turns into a message naming the choices."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def parse_override(item: str) -> tuple[list[str], Any]:
    """``section.key=value`` with value read as a TOML literal (bare words are strings)."""
    if "=" not in item:
        raise UserError(f"--set expects section.key=value, got {item!r}")
    key, raw = item.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise UserError(f"--set expects section.key=value, got {item!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str], values: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--set`` strings (parsed as TOML literals), then ``values``: already-typed values by
    dotted key, taken as they are (a URL or name from an option is never re-parsed)."""
    items = [(item, *parse_override(item)) for item in overrides]
    items += [(key, key.split("."), value) for key, value in (values or {}).items()]
    for item, path, value in items:
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {item!r}: {'.'.join(path[:-1])} is not a section")
            node = child
        node[path[-1]] = value
    return data


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem; a single problem on the same line as the source."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        if item["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key")
        else:
            got = item.get("input")
            shown = "" if isinstance(got, dict) or got is None or where == "study.name" else f" (got {got!r})"
            problems.append(f"{where or '(top level)'}: {mask_secrets(item['msg'] + shown)}")
    if len(problems) == 1:
        return f"{source} is not valid: {problems[0]}"
    return "\n  ".join([f"{source} is not valid:", *problems])


def _resolve(base: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_sqlite(base: Path, url: str) -> str:
    """Make a relative ``sqlite:///file`` URL absolute against the config's folder."""
    if not looks_like_url(url):
        from sqlalchemy.engine import make_url  # only here: SQLAlchemy takes 0.2 s to import

        try:
            make_url(url)  # garbage is refused here, with the parser's reason
        except Exception as exc:  # sqlalchemy raises ArgumentError for garbage
            raise UserError(f"storage URL {mask_url(url)!r} is not a database URL ({mask_secrets(str(exc))})") from None
    database = sqlite_file(url)
    if database is not None:  # its folder is made by the commands that write it (preflight), not here
        return f"sqlite:///{_resolve(base, database)}"
    return url


def _resolve_custom(base: Path, config: Config) -> None:
    """A custom cell's builder, mechanisms and morphology, against the config's folder too."""
    custom = config.simulator.custom
    if custom is None:
        return
    custom.builder = f"{_resolve(base, custom.builder_file)}:{custom.builder_function}"
    if custom.mechanisms is not None:
        custom.mechanisms = _resolve(base, custom.mechanisms)
    if custom.morphology is not None:
        custom.morphology = _resolve(base, custom.morphology)
    custom.files = [_resolve(base, extra) for extra in custom.files]


def load_config(path: Path | None, overrides: list[str] | None = None, values: dict[str, Any] | None = None) -> Config:
    """Read, override, validate and resolve a search.toml (``None``: built-in defaults).
    ``overrides`` are ``--set`` strings; ``values`` are typed values by dotted key
    (``{"study.storage": url}``), used as given."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        source = str(path)
        base = path.resolve().parent
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path} is not valid TOML: {exc}") from None
    data = apply_overrides(data, overrides or [], values)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None
    config.study.work_dir = _resolve(base, config.study.work_dir)
    config.study.storage = _resolve_sqlite(base, config.study.storage)
    config.tracking.uri = _resolve_sqlite(base, config.tracking.uri) if "://" in config.tracking.uri else str(
        _resolve(base, config.tracking.uri)
    )
    if "://" not in config.tracking.artifacts:
        config.tracking.artifacts = str(_resolve(base, config.tracking.artifacts))
    _resolve_custom(base, config)
    if config.data.dataset is not None:
        config.data.dataset = _resolve(base, config.data.dataset)
    return config
