"""The [simulator] section of search.toml, validated, and its data-defining hash.

Everything that changes the simulated data goes into ``config_hash``; settings that
only change how fast it is produced (``processes``) do not, so datasets are shared
between runs that differ only in those.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import SimulatorError
from .nmodl import bundled_mechanisms, folder_digest

BUNDLED_MODELS = ("l5pc", "l5pc_ampa")
MODELS = (*BUNDLED_MODELS, "custom")
GENERATOR_VERSION = 3
"""Bump whenever the bundled cells, the stimulus or the engine change the data they produce."""
SPLITS = ("train", "valid", "test")
Integrator = Literal["fixed", "cvode", "coreneuron"]


class StimulusSpec(BaseModel):
    """Inhomogeneous Poisson input: per-input rate = base rate × per-simulation scale ×
    per-branch factor × per-input factor × a slow temporal modulation shared partly
    across the tree. All log-normal factors have mean 1, so the base rates are means.

    The per-simulation scale is drawn log-uniformly from ``rate_scale``. Left unset, that
    range is *calibrated* for the cell (``simulators/calibrate.py``): short probe runs find
    the drive at which the cell fires at ``output_rate_hz[0]`` and at ``output_rate_hz[1]``,
    then the range is shifted until probes drawn like the dataset fire at ``mean_rate_hz``
    on average. The defaults are the field's protocol: a mean of 1 Hz with a spread like
    Beniaguev et al.'s NeuronIO data (0–4 Hz per simulation)."""

    model_config = ConfigDict(extra="forbid")

    exc_rate_hz: float = Field(10.0, ge=0, description="mean rate of each excitatory input")
    inh_rate_hz: float = Field(10.0, ge=0, description="mean rate of each inhibitory input")
    rate_tau_ms: float = Field(300.0, gt=0, description="time scale (Gaussian smoothing width) of rate changes")
    temporal_sd: float = Field(0.8, ge=0, le=3, description="SD of the log-rate's slow fluctuation in time")
    shared_fraction: float = Field(0.5, ge=0, le=1, description="part of that fluctuation common to all branches")
    ei_correlation: float = Field(0.5, ge=0, le=1, description="how closely inhibition follows excitation in time")
    branch_sd: float = Field(0.5, ge=0, le=3, description="SD of the per-branch log-rate factor (per simulation)")
    input_sd: float = Field(0.3, ge=0, le=3, description="SD of the per-input log-rate factor (per simulation)")
    rate_scale: tuple[float, float] | None = Field(
        None, description="range of the per-simulation multiplier of all rates (log-uniform); unset = calibrated"
    )
    output_rate_hz: tuple[float, float] = Field(
        (0.2, 3.0), description="output rates the calibrated drive range spans (low end, high end): its width"
    )
    mean_rate_hz: float | None = Field(
        1.0, gt=0, description="mean output rate the calibrated range is centred on, checked on probes drawn like the "
        "dataset (unset: not centred)"
    )
    calibration_probes: int = Field(4, ge=1, le=64, description="probe simulations per drive level when calibrating")
    calibration_check: int = Field(
        32, ge=4, le=1024, description="whole simulations drawn like the dataset's, per round of centring the range"
    )
    calibration_tolerance: float = Field(
        0.1, gt=0, le=1, description="centring stops once the probes' mean rate is this close to mean_rate_hz (relative)"
    )
    normalise_drive: bool = Field(
        True, description="rescale each simulation's rates so its realised mean drive is exactly base × scale"
    )
    max_rate_hz: float = Field(200.0, gt=0, le=1000, description="cap on any instantaneous rate")

    @field_validator("rate_scale")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] <= v[1]:
            raise ValueError("rate_scale must be (low, high) with 0 < low <= high")
        return v

    @field_validator("output_rate_hz")
    @classmethod
    def _rates_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 500:
            raise ValueError("output_rate_hz must be (low, high) with 0 < low <= high <= 500")
        return v

    @model_validator(mode="after")
    def _mean_inside_range(self) -> "StimulusSpec":
        low, high = self.output_rate_hz
        if self.mean_rate_hz is not None and not low <= self.mean_rate_hz <= high:
            raise ValueError(
                f"mean_rate_hz {self.mean_rate_hz:g} lies outside output_rate_hz [{low:g}, {high:g}]: the range is "
                f"centred on the mean, so give a mean inside it (for a log-uniform spread of rates, "
                f"(high - low) / ln(high / low) = {(high - low) / np.log(high / low) if high > low else low:.3g} Hz)"
            )
        return self


class CustomModelSpec(BaseModel):
    """A user's cell: ``builder = "path/to/file.py:function"``; the function is called
    with the morphology path (or None) and returns a ``CellModel``."""

    model_config = ConfigDict(extra="forbid")

    builder: str
    mechanisms: Path | None = None
    morphology: Path | None = None
    files: list[Path] = Field(
        default_factory=list, description="other files or folders the builder loads, hashed into the dataset too"
    )

    @field_validator("builder")
    @classmethod
    def _file_and_function(cls, v: str) -> str:
        path, sep, func = v.rpartition(":")
        if not sep or not path or not func.isidentifier():
            raise ValueError('builder must look like "path/to/file.py:function_name"')
        return v

    @property
    def builder_file(self) -> Path:
        return Path(self.builder.rpartition(":")[0]).expanduser()

    @property
    def builder_function(self) -> str:
        return self.builder.rpartition(":")[2]

    def check_files(self) -> None:
        """Raise ``SimulatorError`` for a builder, folder or morphology that is not there."""
        if not self.builder_file.is_file():
            raise SimulatorError(f"custom model builder file {self.builder_file} does not exist")
        if self.mechanisms is not None and not self.mechanisms.expanduser().is_dir():
            raise SimulatorError(f"custom model mechanism folder {self.mechanisms} does not exist")
        if self.morphology is not None and not self.morphology.expanduser().is_file():
            raise SimulatorError(f"custom model morphology file {self.morphology} does not exist")
        for extra in self.files:
            if not extra.expanduser().exists():
                raise SimulatorError(f"custom model file {extra} (simulator.custom.files) does not exist")

    def content_digest(self) -> dict[str, str | None]:
        """Hashes of the files' contents, so moving them does not change the dataset."""
        self.check_files()

        def file_sha(p: Path) -> str:
            return hashlib.sha256(p.expanduser().read_bytes()).hexdigest()

        return {
            "builder_function": self.builder_function,
            "builder_sha256": file_sha(self.builder_file),
            "builder_folder_sha256": tree_digest([self.builder_file.expanduser().resolve().parent]),
            "mechanisms_sha256": folder_digest(self.mechanisms.expanduser()) if self.mechanisms else None,
            "morphology_sha256": file_sha(self.morphology) if self.morphology else None,
            **({"files_sha256": tree_digest([p.expanduser() for p in self.files], every_file=True)}
               if self.files else {}),
        }


MODEL_SOURCES = {".py", ".hoc", ".ses", ".mod", ".inc", ".asc", ".swc", ".nml", ".txt", ".dat", ".csv"}
"""What a builder's folder is hashed by: the files a NEURON model is made of (hoc templates
the builder loads, Python helpers, parameters), never a study's outputs."""
NOT_MODEL = {"work", "mlflow", "mlruns", "x86_64", "aarch64", "arm64", "__pycache__", "datasets", "studies"}
"""Folders under a builder's folder that hold outputs or builds, not the model."""


def tree_digest(roots: list[Path], every_file: bool = False) -> str:
    """sha256 over the relative names and contents of the model's files under ``roots``
    (files, or folders searched recursively): with ``every_file`` every file, otherwise
    the ``MODEL_SOURCES`` outside ``NOT_MODEL`` folders and hidden ones."""
    digest = hashlib.sha256()
    for root in roots:
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*")
            if p.is_file() and (every_file or (p.suffix.lower() in MODEL_SOURCES
                                               and not any(part in NOT_MODEL or part.startswith(".")
                                                           for part in p.relative_to(root).parts[:-1])))
        )
        for path in files:
            digest.update(str(path.relative_to(root) if path != root else path.name).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class SimulationSpec(BaseModel):
    """What to simulate: which cell, how many simulations of what length, which stimulus."""

    model_config = ConfigDict(extra="forbid")

    model: str = "l5pc"
    custom: CustomModelSpec | None = None
    n_simulations: int = Field(40, ge=3)
    duration_ms: int = Field(3000, gt=0, description="recorded per simulation, including the discarded start")
    discard_ms: int = Field(500, ge=0)
    seed: int = Field(0, ge=0)
    processes: int = Field(0, ge=0, description="worker processes; 0 = all cores")
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    stimulus: StimulusSpec = Field(default_factory=StimulusSpec)
    integrator: Integrator = Field(
        "fixed",
        description="fixed: NEURON's fixed step at the cell's dt; cvode: variable step (cvode_atol); "
        "coreneuron: the cell's dt in CoreNEURON (mechanisms compiled for it)",
    )
    cvode_atol: float = Field(1e-3, gt=0, le=1, description="CVode absolute tolerance (mV, scaled per state)")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; choose one of: {', '.join(MODELS)}")
        return v

    @field_validator("split")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError("split must be three positive fractions (train, valid, test) summing to 1")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "SimulationSpec":
        if self.discard_ms >= self.duration_ms:
            raise ValueError("discard_ms must be smaller than duration_ms")
        if (self.model == "custom") != (self.custom is not None):
            raise ValueError('a [simulator.custom] section is required exactly when model = "custom"')
        empty = [name for name, ids in self.split_indices().items() if not ids]
        if empty:
            seen, enough = set(SPLITS) - set(empty), self.n_simulations
            while len(seen) < len(SPLITS):  # the first count at which every split has a simulation
                seen.add(split_of(self.seed, enough, self.split))
                enough += 1
            raise ValueError(
                f"split {self.split} of {self.n_simulations} simulations leaves the {', '.join(empty)} split empty; "
                f"n_simulations = {enough} gives every split at least one simulation"
            )
        return self

    @property
    def recorded_ms(self) -> int:
        """T: the length kept per simulation, after the discard."""
        return self.duration_ms - self.discard_ms

    def resolved_processes(self) -> int:
        import os

        return self.processes or len(os.sched_getaffinity(0))

    def config_hash(self, ignore: Iterable[str] = (), **facts: Any) -> str:
        """Stable hash of everything that changes the data (never ``processes``).
        ``ignore`` leaves out more fields and ``facts`` adds values, for the hash of
        something that depends on less than the whole dataset (the drive calibration)."""
        unused = {"integrator"} if self.integrator == "fixed" else set()  # fixed-step hashes stay as they were
        if self.integrator != "cvode":
            unused.add("cvode_atol")
        payload = {
            "generator_version": GENERATOR_VERSION,
            "spec": self.model_dump(mode="json", exclude={"processes", "custom", *unused, *ignore}),
            **facts,
        }
        if self.custom is not None:
            payload["custom"] = self.custom.content_digest()
        else:
            payload["mechanisms_sha256"] = folder_digest(bundled_mechanisms(self.integrator))
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def split_indices(self) -> dict[str, list[int]]:
        """Simulation indices per split (see ``split_of``)."""
        ids: dict[str, list[int]] = {name: [] for name in SPLITS}
        for i in range(self.n_simulations):
            ids[split_of(self.seed, i, self.split)].append(i)
        return ids


_GOLDEN = (5**0.5 - 1) / 2


def split_of(seed: int, index: int, fractions: tuple[float, float, float]) -> str:
    """The split of simulation ``index``: a function of (seed, index) alone, so a dataset
    that grows keeps every old simulation in its split (contiguous blocks moved old
    validation and test simulations into training). A golden-ratio sequence with a
    seeded offset keeps the proportions close to ``fractions`` for any count."""
    offset = float(np.random.default_rng([seed, 0x5E11]).random())
    u = (offset + index * _GOLDEN) % 1.0
    if u < fractions[1]:
        return "valid"
    if u < fractions[1] + fractions[2]:
        return "test"
    return "train"
