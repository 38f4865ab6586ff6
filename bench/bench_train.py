"""Training and inference throughput of the search's own trainer.

Measures the product path (``SplitTensors`` sparse→dense on the device, ``Trainer``'s
step, ``predict``) on synthetic Poisson inputs shaped like a dataset, so any
architecture, including the published 7 × 128 TCN on 2556 inputs, can be timed
without simulating it first.

    python bench/bench_train.py                         # reference TCN + default-space TCNs
    python bench/bench_train.py --device cpu --batch 4  # a CPU-sized run

Prints a table and appends it to bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from results import heading, publish
from synthetic import SyntheticDataset  # bench/synthetic.py (bench scripts run from bench/ on sys.path)

from neurosearch.search.config import TrainingSection
from neurosearch.search.training.data import SplitTensors
from neurosearch.search.training.train import Trainer, predict, resolve_device
from neurosearch.spaces import InputMeta, get_family, n_params

REFERENCE = {"family": "tcn", "depth": 7, "width": 128, "kernels": [54] + [24] * 6, "dilations": [1] * 7,
             "residual": False, "norm": "batch", "activation": "relu"}


def spec_from_space(depth: int, width: int, first: int, kernel: int) -> dict:
    return {"family": "tcn", "depth": depth, "width": width, "kernels": [first] + [kernel] * (depth - 1),
            "dilations": [1] * depth, "residual": False, "norm": "batch", "activation": "relu"}


def bench(spec: dict, n_inputs: int, batch: int, window: int, steps: int, device: torch.device, amp: str) -> dict:
    data = SplitTensors(SyntheticDataset(n_inputs, 8, max(window * 2, 2000)), "train", device)
    settings = TrainingSection(epochs=1, steps_per_epoch=steps, batch_size=batch, window_ms=window,
                               burn_in_ms=min(100, window // 2), amp=amp)
    model = get_family("tcn").build(spec, InputMeta.ungrouped(n_inputs))
    trainer = Trainer(model, data, data, settings, 1e-3, seed=0)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)

    def step() -> None:
        x, s, v = data.sample(batch, window, gen)
        loss = trainer._loss(x, s, v)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    for _ in range(2):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    predict(trainer.model, data, settings, 0.0, 1.0)
    sync()
    infer_s = time.perf_counter() - start
    return {
        "params": n_params(model),
        "train_ms_per_s": batch * window * steps / train_s,
        "infer_neuron_s_per_s": len(data) * data.T / 1000 / infer_s,
    }


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} — {cpu}, {torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--skip-reference", action="store_true", help="only the default-space networks")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cases = [] if args.skip_reference else [("reference 7×128 TCN, 2556 inputs", REFERENCE, 2556)]
    cases += [(f"default space tcn d{d} w{w}", spec_from_space(d, w, 40, 9), 300) for d, w in ((1, 32), (4, 32), (4, 64))]
    rows = []
    for label, spec, n_inputs in cases:
        r = bench(spec, n_inputs, args.batch, args.window, args.steps, device, args.amp)
        rows.append(f"| {label} | {r['params']:,} | {args.batch}×{args.window} ms | {args.amp} | "
                    f"{r['train_ms_per_s']:,.0f} | {r['infer_neuron_s_per_s']:,.1f} |")
        print(rows[-1], flush=True)
    publish([
        heading("bench_train", f"device {device}"),
        f"Machine: {machine()}",
        f"Command: `python bench/bench_train.py --device {args.device} --batch {args.batch} --window {args.window} "
        f"--steps {args.steps} --amp {args.amp}{' --skip-reference' if args.skip_reference else ''}`\n",
        "| network | params | batch | amp | train: simulated ms / s | inference: neuron-s / s |",
        "| --- | ---: | --- | --- | ---: | ---: |",
        *rows,
    ])


if __name__ == "__main__":
    main()
