"""Surrogate speed: neuron-seconds simulated per wall-second by a study's best networks.

For the best finished trial of each family in a study (or the paper's 7 × 128 TCN with
random weights when ``--reference``), runs ``--batch`` neurons × ``--seconds`` of
random input spikes through the network in inference mode on the chosen device and
compares with NEURON on the same cell (the dataset manifest's wall-seconds per
simulated second on one core, and that divided by the cores of this machine).

    python bench/bench_surrogate.py                         # the default study (search.toml)
    python bench/bench_surrogate.py -c my.toml --device cuda --batch 256 --amp bf16

Prints a table and appends it to bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import optuna
import torch
from results import heading, publish

from neurosearch.search.config import load_config
from neurosearch.search.study.workspace import Workspace, load_model, load_study, study_uid
from neurosearch.search.training.train import resolve_device
from neurosearch.simulators import Dataset
from neurosearch.spaces import InputMeta, get_family, n_params

REFERENCE = {"family": "tcn", "depth": 7, "width": 128, "kernels": [54] + [24] * 6, "dilations": [1] * 7,
             "residual": False, "norm": "batch", "activation": "relu"}


def best_per_family(config) -> dict[str, tuple[int, float, Path]]:
    """family -> (trial, validation metric, model file) of the study's best finished trial."""
    study = load_study(config.study.storage, config.study.name)
    workspace = Workspace.of(config, study_uid(study))
    best: dict[str, tuple[int, float, Path]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        path = workspace.model(t.number)
        family = t.params["family"]
        if path.exists() and t.value == t.value and (family not in best or t.value > best[family][1]):
            best[family] = (t.number, t.value, path)
    return best


def neuron_seconds_per_second(model: torch.nn.Module, n_inputs: int, batch: int, ms: int, device: torch.device,
                              amp: str, repeats: int) -> float:
    x = (torch.rand(batch, n_inputs, ms, device=device) < 0.005).float()  # ~5 Hz per synapse
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
    with torch.inference_mode(), cast:
        model(x)  # warm-up (cuDNN autotune, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    return batch * ms / 1000 * repeats / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", type=Path, default=Path("search.toml"))
    parser.add_argument("--set", action="append", default=[], help="config override, as for neurosearch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=32, help="neurons simulated at once")
    parser.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per neuron")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", choices=("off", "bf16"), default="off")
    parser.add_argument("--reference", action="store_true", help="also time the paper's 7 x 128 TCN (2556 inputs)")
    args = parser.parse_args()

    config = load_config(args.config, args.set)
    device = resolve_device(args.device)
    ms = int(args.seconds * 1000)
    study = optuna.load_study(study_name=config.study.name, storage=config.study.storage)
    neuron = Dataset.open(Path(study.user_attrs["dataset_path"]), verify=False).wall_s_per_simulated_s
    cores = os.cpu_count() or 1

    rows = []
    for family, (trial, value, path) in best_per_family(config).items():
        model, saved = load_model(path, device)
        speed = neuron_seconds_per_second(model, saved["n_inputs"], args.batch, ms, device, args.amp, args.repeats)
        rows.append((f"{family} trial {trial} (depth {saved['spec']['depth']}, val {value:.4f})", n_params(model), speed))
    if args.reference:
        model = get_family("tcn").build(REFERENCE, InputMeta.ungrouped(2556)).to(device).eval()
        speed = neuron_seconds_per_second(model, 2556, args.batch, ms, device, args.amp, args.repeats)
        rows.append(("paper 7x128 TCN, 2556 inputs (random weights)", n_params(model), speed))

    header = (f"| network | params | neuron-s / wall-s | x NEURON 1 core | x NEURON {cores} cores |\n"
              "| --- | ---: | ---: | ---: | ---: |")
    lines = [header]
    for name, size, speed in rows:
        one = speed * neuron if neuron else float("nan")
        lines.append(f"| {name} | {size:,} | {speed:,.1f} | {one:,.1f} | {one / cores:,.1f} |")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    neuron_note = f"{neuron:.3f} wall-s per simulated s on one core" if neuron else "unknown (no dataset manifest)"
    text = (heading("bench_surrogate", gpu) + "\n"
            f"`python bench/bench_surrogate.py {' '.join(sys.argv[1:])}` — study {config.study.name}, device "
            f"{device}, amp {args.amp}, batch {args.batch} × {args.seconds:g} s; NEURON: {neuron_note}\n\n"
            + "\n".join(lines) + "\n")
    publish(text)


if __name__ == "__main__":
    main()
