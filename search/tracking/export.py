"""The winning surrogate outside neurosearch: TorchScript, ONNX and the MLflow model registry.

A study saves each finished trial as ``work_dir/studies/<study>/models/trial-<n>.pt``
(spec + state dict + voltage scale; see ``workspace.save_model``). The network in there
outputs ``(spike_logit, standardised voltage)``; what leaves neurosearch is ``Surrogate``,
which wraps it to take what a user has and give what a user wants:

    spikes  float32 [batch, n_inputs, time]  0/1 synaptic input spikes, 1 ms bins
    ->  spike_probability  float32 [batch, time]   P(somatic spike in that ms)
        voltage_mV         float32 [batch, time]   somatic voltage (clipped at -55 mV, as trained)

Feed-forward families (finite receptive field) export with dynamic batch and time
axes. Recurrent ones (receptive field ``None``) are scripted for TorchScript and for
ONNX (a Loop over time); where a format cannot express the loop, the file is fixed to
one length and says so (``fixed_time_ms``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from neurosearch.simulators import Dataset
from neurosearch.spaces import get_family

from ..answer.report import build_report
from ..config import Config
from ..errors import UserError
from ..folders import writable_folder
from ..study.attrs import ATTR_DATASET_PATH
from ..study.workspace import Workspace, load_model, load_study, study_uid
from .tracker import Tracker

log = logging.getLogger(__name__)

Format = Literal["torchscript", "onnx"]
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAME = "spikes"
OUTPUT_NAMES = ("spike_probability", "voltage_mV")
#: time steps of the example input where the time axis is dynamic (any length >= 2 works)
EXAMPLE_MS = 64
#: tolerance of the round-trip check (float32, different kernels)
ATOL = 1e-4


class Surrogate(nn.Module):
    """A trained network as users call it: spikes in, spike probability and voltage (mV) out."""

    def __init__(self, net: nn.Module, v_mean: float, v_std: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("v_mean", torch.tensor(float(v_mean), dtype=torch.float32))
        self.register_buffer("v_std", torch.tensor(float(v_std), dtype=torch.float32))

    def forward(self, spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit, v = self.net(spikes)
        return torch.sigmoid(logit), v * self.v_std + self.v_mean


def load_surrogate(model_path: Path) -> tuple[Surrogate, dict]:
    """The saved trial as a CPU ``Surrogate`` in eval mode, and its saved record."""
    net, saved = load_model(Path(model_path), "cpu")
    return Surrogate(net, saved["v_mean"], saved["v_std"]).eval(), saved


def length_generic(saved: dict) -> bool:
    """True when the network is feed-forward in time (works at any length once exported)."""
    return get_family(saved["spec"]["family"]).receptive_field(saved["spec"]) is not None


def random_spikes(n_inputs: int, length: int, batch: int = 2, rate: float = 0.01, seed: int = 0) -> torch.Tensor:
    """Bernoulli 0/1 input ``[batch, n_inputs, length]`` (``rate`` spikes per input per ms)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, n_inputs, length, generator=generator) < rate).float()


@contextlib.contextmanager
def _quiet():
    """torch.jit / torch.onnx print progress and deprecation notes; a CLI wants one line."""
    sink = io.StringIO()
    torch_onnx = logging.getLogger("torch.onnx")
    level = torch_onnx.level
    torch_onnx.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..."
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_onnx.setLevel(level)


# --------------------------------------------------------------------------- TorchScript


def to_torchscript(model: Surrogate, example: torch.Tensor, generic: bool) -> tuple[torch.jit.ScriptModule, int | None]:
    """Traced (feed-forward) or scripted (recurrent) module; second item: fixed length or None."""
    with _quiet(), torch.no_grad():
        if not generic:
            try:
                return torch.jit.script(model), None
            except Exception as exc:  # a construct TorchScript cannot compile: fall back to a trace
                log.warning("torch.jit.script failed (%s); tracing at a fixed length of %d ms",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__, example.shape[-1])
        traced = torch.jit.trace(model, (example,), check_trace=False)
    return traced, None if generic else int(example.shape[-1])


# --------------------------------------------------------------------------- ONNX


def _onnx_modules() -> None:
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    if missing:
        raise UserError(
            f"ONNX export needs the package(s) {', '.join(missing)}: pip install onnx onnxscript onnxruntime"
        )


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _onnx_time_axis_dynamic(path: Path) -> bool:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 3 and bool(dims[2].dim_param)


def to_onnx(model: Surrogate, example: torch.Tensor, path: Path, generic: bool) -> int | None:
    """Write ``model`` as ONNX (dynamic batch and time axes); returns a fixed length or None."""
    _onnx_modules()
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {INPUT_NAME: {0: "batch", 2: "time"}, **{name: {0: "batch", 1: "time"} for name in OUTPUT_NAMES}}
    with _quiet(), torch.no_grad():
        if generic:
            dims = {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=1 << 16),
                                 2: torch.export.Dim("time", min=2, max=1 << 24)}}
            program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=dims,
                                        input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), verbose=False)
            program.save(str(path))
            if _onnx_time_axis_dynamic(path):
                return None
        # A loop over time: the TorchScript-based exporter turns the scripted loop into an ONNX Loop.
        try:
            scripted = torch.jit.script(model)
            torch.onnx.export(scripted, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), dynamic_axes=axes)
            if _onnx_time_axis_dynamic(path):
                return None
        except Exception as exc:
            log.warning("ONNX export with a dynamic time axis failed (%s); exporting at a fixed length of %d ms",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__, example.shape[-1])
        program = torch.onnx.export(model, (example,), dynamo=True,
                                    dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=1 << 16)}},
                                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), verbose=False)
        program.save(str(path))
    return int(example.shape[-1])


# --------------------------------------------------------------------------- round trip


def run_exported(path: Path, fmt: Format, spikes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Spike probability and voltage from an exported file (TorchScript via torch.jit.load,
    ONNX via onnxruntime)."""
    if fmt == "torchscript":
        with _quiet():
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            prob, volts = loaded(spikes)
        return prob.numpy(), volts.numpy()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # a Loop's symbolic shapes make onnxruntime warn at every step
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    prob, volts = session.run(list(OUTPUT_NAMES), {INPUT_NAME: spikes.numpy().astype(np.float32)})
    return prob, volts


def max_abs_difference(path: Path, fmt: Format, model: Surrogate, spikes: torch.Tensor) -> dict[str, float]:
    """Largest |exported - in-process| per output on ``spikes``."""
    with torch.no_grad():
        want = [t.numpy() for t in model(spikes)]
    got = run_exported(path, fmt, spikes)
    return {name: float(np.max(np.abs(g - w))) for name, g, w in zip(OUTPUT_NAMES, got, want)}


# --------------------------------------------------------------------------- export a trial


def model_info(saved: dict, fmt: str, fixed_time_ms: int | None, **extra: Any) -> dict[str, Any]:
    """What a user of the exported file needs to know (written next to it as JSON)."""
    return {
        "format": fmt,
        "inputs": {INPUT_NAME: f"float32 [batch, {saved['n_inputs']}, time]: 0/1 synaptic input spikes, 1 ms bins"},
        "outputs": {
            OUTPUT_NAMES[0]: "float32 [batch, time]: probability of a somatic spike in each ms",
            OUTPUT_NAMES[1]: "float32 [batch, time]: somatic voltage in mV (spikes clipped at -55 mV)",
        },
        "n_inputs": saved["n_inputs"],
        "fixed_time_ms": fixed_time_ms,
        "v_mean": saved["v_mean"],
        "v_std": saved["v_std"],
        "spec": saved["spec"],
        **extra,
    }


def export_file(
    model_path: Path, fmt: Format, output: Path, check_input: torch.Tensor | None = None, fixed_length: int = 1000
) -> tuple[int | None, dict[str, float] | None, dict]:
    """Export one saved trial to ``output`` and compare it with the in-process model.

    ``fixed_length``: the length a recurrent network is fixed to where a format needs one
    (the dataset's simulation length). ``check_input``: ``[batch, n_inputs, time]`` spikes
    for the round trip (random spikes when None). Returns (fixed length or None, max |Δ|
    per output or None when onnxruntime is missing, saved record).
    """
    if fmt not in SUFFIX:
        raise UserError(f"unknown export format {fmt!r}; choose torchscript or onnx")
    model, saved = load_surrogate(model_path)
    generic = length_generic(saved)
    example = random_spikes(saved["n_inputs"], EXAMPLE_MS if generic else fixed_length)
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        module, fixed = to_torchscript(model, example, generic)
        module.save(str(output))
    else:
        fixed = to_onnx(model, example, output, generic)
    if check_input is None:
        check_input = random_spikes(saved["n_inputs"], fixed or 500, batch=1, seed=1)
    if fixed is not None and check_input.shape[-1] != fixed:
        check_input = torch.nn.functional.pad(check_input, (0, max(0, fixed - check_input.shape[-1])))[..., :fixed]
    try:
        diff = max_abs_difference(output, fmt, model, check_input)
    except ImportError:  # onnxruntime is optional
        diff = None
    return fixed, diff, saved


@dataclass
class ExportResult:
    path: Path
    info_path: Path
    format: str
    trial: int
    fixed_time_ms: int | None
    checked_on: str
    max_abs_diff: dict[str, float] | None


def export_trial(config: Config, fmt: Format, trial: int | None = None, output: Path | None = None) -> ExportResult:
    """``neurosearch export``: the report's winner (or ``trial``) of the configured study as a
    standalone file, checked against the in-process model on a test simulation of the dataset."""
    if fmt not in SUFFIX:
        raise UserError(f"unknown export format {fmt!r}; choose torchscript or onnx")
    name = config.study.name
    study = load_study(config.study.storage, name)
    workspace = Workspace.of(config, study_uid(study))
    if trial is None:
        winner = build_report(study).winner
        if winner is None:
            raise UserError(f"study {name!r} has no finished trial to export yet")
        trial = winner.trial
    model_path = workspace.model(trial)
    if not model_path.exists():
        states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
        why = f"it is {states[trial]}" if trial in states else "no such trial"
        raise UserError(f"trial {trial} of study {name!r} has no saved model at {model_path} ({why})")
    default = workspace.export(trial, SUFFIX[fmt])
    default_name = default.name
    output = Path(output) if output is not None else default
    if output.is_dir():
        raise UserError(f"{output} is a folder; give --output a file name, e.g. {output / default_name}")
    writable_folder(output.parent, "the folder of the exported file")
    check, label, length, dataset_dir = None, "random spikes", 1000, None
    dataset_path = study.user_attrs.get(ATTR_DATASET_PATH)
    if dataset_path and Path(dataset_path).is_dir():
        try:
            dataset = Dataset.open(Path(dataset_path), verify=False)
            sim_id = (dataset.indices("test") or dataset.indices("valid"))[0]
            sim = dataset.load(sim_id)
            check = torch.from_numpy(sim.dense_input()).float()[None]
            label, length = f"test simulation {sim_id} of dataset {dataset.path.name[:12]}", dataset.duration_ms
            dataset_dir = str(dataset.path.resolve())
        except Exception as exc:  # the check falls back to random spikes; the export itself is unaffected
            log.warning("dataset %s unreadable (%s); checking the export on random spikes", dataset_path, exc)
    fixed, diff, saved = export_file(model_path, fmt, output, check, fixed_length=length)
    info_path = Path(f"{output}.json")
    info = model_info(saved, fmt, fixed, study=name, trial=trial, dataset=dataset_dir, checked_on=label,
                      max_abs_diff=diff)
    info_path.write_text(json.dumps(info, indent=2))
    return ExportResult(Path(output), info_path, fmt, trial, fixed, label, diff)


# --------------------------------------------------------------------------- MLflow registry


def registered_name(study: str) -> str:
    """The model-registry name of a study's winner."""
    return f"{study}-surrogate"


def signature(n_inputs: int):
    """MLflow signature: spikes [batch, n_inputs, time] -> spike probability, voltage [batch, time]."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, n_inputs, -1), INPUT_NAME)]),
        outputs=Schema([TensorSpec(f32, (-1, -1), OUTPUT_NAMES[0]), TensorSpec(f32, (-1, -1), OUTPUT_NAMES[1])]),
    )


def register_model(
    tracker: Tracker, run_id: str, model_path: Path, name: str, tags: dict[str, Any], fixed_length: int,
    artifact_path: str = "model",
) -> str:
    """Log the saved trial as an MLflow pytorch model (``torch.export`` "pt2" format: no
    pickle, no neurosearch needed to load it) on ``run_id`` and register it as a new
    version of ``name``. Returns the version."""
    import mlflow.pytorch

    model, saved = load_surrogate(model_path)
    generic = length_generic(saved)
    length = EXAMPLE_MS if generic else fixed_length
    info = model_info(saved, "mlflow-pytorch-pt2", None if generic else length, **{k: str(v) for k, v in tags.items()})
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        folder = Path(tmp, artifact_path)
        mlflow.pytorch.save_model(
            model, str(folder), signature=signature(saved["n_inputs"]),
            input_example=np.zeros((2, saved["n_inputs"], length), np.float32),
            pip_requirements=[f"torch>={torch.__version__.split('+')[0]}"], serialization_format="pt2",
            metadata={key: value for key, value in info.items() if key != "spec"} | {"spec": json.dumps(saved["spec"])},
        )
        (folder / "spec.json").write_text(json.dumps(saved["spec"], indent=2))
        return tracker.register_model(
            run_id, folder, artifact_path, name,
            tags={**{k: str(v) for k, v in tags.items()}, "spec": json.dumps(saved["spec"])[:4900],
                  "fixed_time_ms": str(None if generic else length)},
            description=f"trial {tags.get('optuna.trial', '?')} of study {tags.get('optuna.study', '?')}",
        )
