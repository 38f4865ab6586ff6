"""Every GPU measurement of issue 12 in one run (one short device lease), one table out.

Training goes through the product's own path: ``SplitTensors`` (events resident on the
device, densified per batch) and ``Trainer``'s loss and Adam step, on synthetic Poisson
inputs (~0.5% of bins hold a spike), ~1% spike targets and noisy voltages. Variants:
fp32 / TF32 / bf16 autocast, dense vs sparse first layer, a CUDA graph of the model,
torch.compile; the ELM's reference loop vs its scan + hand-written backward; inference
(neuron-seconds per second) for a mid-size and the reference TCN.

    python bench/bench_gpu.py --out DIR            # on a GPU: ~4 minutes
    python bench/bench_gpu.py --cpu-smoke          # tiny sizes on the CPU: checks the script

Runs without optuna (a stub is installed when it is missing: the spaces only name it in
annotations). Each row: median of ``--repeats`` timed blocks after warm-up, timed with
``torch.cuda.synchronize`` around each block. A time budget skips what no longer fits;
the table is printed (and written to DIR/bench_gpu.txt) after every row.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]

try:  # the spaces import optuna for type annotations only
    import optuna  # noqa: F401
except ImportError:
    sys.modules["optuna"] = types.ModuleType("optuna")

from synthetic import SyntheticDataset  # bench/synthetic.py (bench scripts run from bench/ on sys.path)  # noqa: E402

from neurosearch.search.config import TrainingSection  # noqa: E402
from neurosearch.search.training.data import SplitTensors  # noqa: E402
from neurosearch.search.training.train import Trainer, resolve_device  # noqa: E402
from neurosearch.spaces import InputMeta, get_family, n_params

REFERENCE = {"family": "tcn", "depth": 7, "width": 128, "kernels": [54] + [24] * 6, "dilations": [1] * 7,
             "residual": False, "norm": "batch", "activation": "relu"}
MID = {"family": "tcn", "depth": 3, "width": 64, "kernels": [40, 9, 9], "dilations": [1, 1, 1],
       "residual": False, "norm": "batch", "activation": "relu"}
ELM = {"family": "elm", "depth": 3, "memory_units": 16, "hidden": [64, 64], "activation": "relu",
       "tau_min": 2.0, "tau_max": 200.0}


def reference_elm_forward() -> Callable:
    """The per-millisecond loop, kept in tests/test_elm_parallel.py as the reference."""
    path = ROOT / "tests" / "test_elm_parallel.py"
    spec = importlib.util.spec_from_file_location("elm_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_forward


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, warmup: int, iters: int, repeats: int) -> float:
    """Median seconds per call over ``repeats`` blocks of ``iters`` calls, after ``warmup``."""
    for _ in range(warmup):
        fn()
    sync(device)
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        blocks.append((time.perf_counter() - start) / iters)
    return statistics.median(blocks)


@contextlib.contextmanager
def precision(mode: str):
    """fp32: TF32 off; tf32: TF32 matmul + conv; bf16: TF32 on and bf16 autocast (by the Trainer)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    tf32 = mode != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# --------------------------------------------------------------------------- measurements


@dataclass
class Sizes:
    batch: int
    window: int
    ref_inputs: int
    mid_inputs: int
    infer_batch_mid: int
    infer_batch_ref: int
    infer_ms: int
    warmup: int
    iters: int
    repeats: int
    elm_iters: int


def train_throughput(spec: dict, n_inputs: int, mode: str, sizes: Sizes, device: torch.device,
                     graph: bool = False, compile_model: bool = False, forward: Callable | None = None,
                     iters: int | None = None) -> tuple[float, int]:
    """Simulated ms per second of the Trainer's step (sample, loss, backward, Adam)."""
    data = SplitTensors(SyntheticDataset(n_inputs, 8, max(sizes.window * 2, 2000), spike_every=100), "train", device)
    settings = TrainingSection(epochs=1, steps_per_epoch=1, batch_size=sizes.batch, window_ms=sizes.window,
                               burn_in_ms=min(100, sizes.window // 2), amp="bf16" if mode == "bf16" else "off")
    torch.manual_seed(0)
    model = get_family(spec["family"]).build(spec, InputMeta.ungrouped(n_inputs))
    if forward is not None:
        model.forward = types.MethodType(forward, model)
    with precision(mode):
        trainer = Trainer(model, data, data, settings, 1e-3, seed=0)
        gen = torch.Generator(device=device)
        gen.manual_seed(0)
        if graph:
            x, _, _ = data.sample(sizes.batch, sizes.window, gen)
            trainer.model = torch.cuda.make_graphed_callables(trainer.model, (x,))
        if compile_model:
            trainer.model = torch.compile(trainer.model)

        def step() -> None:
            x, s, v = data.sample(sizes.batch, sizes.window, gen)
            loss = trainer._loss(x, s, v)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()

        seconds = timed(step, device, sizes.warmup, iters or sizes.iters, sizes.repeats)
    return sizes.batch * sizes.window / seconds, n_params(model)


def sample_only(n_inputs: int, sizes: Sizes, device: torch.device) -> float:
    """Seconds per SplitTensors.sample (the densify step alone)."""
    data = SplitTensors(SyntheticDataset(n_inputs, 8, max(sizes.window * 2, 2000), spike_every=100), "train", device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    return timed(lambda: data.sample(sizes.batch, sizes.window, gen), device, sizes.warmup, sizes.iters, sizes.repeats)


def inference_throughput(spec: dict, n_inputs: int, batch: int, ms: int, mode: str, sizes: Sizes,
                         device: torch.device) -> float:
    """Neuron-seconds per second: ``batch`` neurons x ``ms`` of 5 Hz input spikes, eval mode."""
    torch.manual_seed(0)
    model = get_family(spec["family"]).build(spec, InputMeta.ungrouped(n_inputs)).to(device).eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(1)
    x = (torch.rand(batch, n_inputs, ms, device=device, generator=gen) < 0.005).float()
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()
    with precision(mode), torch.inference_mode(), cast:
        seconds = timed(lambda: model(x), device, 1, 1, sizes.repeats)
    return batch * ms / 1000 / seconds


def matmul_ceiling(device: torch.device, n: int) -> float:
    """bf16 TFLOP/s of an n^3 product on random data (the card's matrix ceiling)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / timed(lambda: a @ b, device, 3, 10, 3) / 1e12


# --------------------------------------------------------------------------- main


class Table:
    def __init__(self, out: Path | None, header: str) -> None:
        self.out, self.header, self.rows = out, header, []

    def add(self, *cells: object) -> None:
        self.rows.append("| " + " | ".join(str(c) for c in cells) + " |")
        print(self.rows[-1], flush=True)
        self.write()

    def text(self) -> str:
        return "\n".join([self.header, "| measurement | variant | params | result | unit |",
                          "| --- | --- | ---: | ---: | --- |", *self.rows])

    def write(self) -> None:
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "bench_gpu.txt").write_text(self.text() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="folder for bench_gpu.txt")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, to check the script")
    parser.add_argument("--budget", type=float, default=285.0, help="seconds; later rows are skipped past it")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(2)
        sizes = Sizes(batch=2, window=120, ref_inputs=64, mid_inputs=32, infer_batch_mid=2, infer_batch_ref=2,
                      infer_ms=200, warmup=1, iters=1, repeats=2, elm_iters=1)
        ref_spec = {**REFERENCE, "depth": 3, "width": 16, "kernels": [54, 24, 24], "dilations": [1] * 3}
    else:
        device = resolve_device("cuda")  # cudnn.benchmark on, TF32 on (the product's setting)
        sizes = Sizes(batch=32, window=1000, ref_inputs=2556, mid_inputs=256, infer_batch_mid=512,
                      infer_batch_ref=64, infer_ms=2000, warmup=3, iters=10, repeats=3, elm_iters=2)
        ref_spec = REFERENCE
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    header = (f"## bench_gpu — {name}, torch {torch.__version__}\n\n"
              f"training: batch {sizes.batch} x {sizes.window} ms through SplitTensors + Trainer "
              f"(Adam, BCE + MSE); inference: {sizes.infer_ms} ms per neuron\n")
    table = Table(args.out, header)
    print(header, flush=True)
    ref_label = f"ref TCN 7x128, {sizes.ref_inputs} in" if not args.cpu_smoke else "ref-like TCN (smoke)"

    def row(label: str, variant: str, fn: Callable[[], tuple[float, int | str]], unit: str, needs: float) -> None:
        left = args.budget - (time.perf_counter() - start)
        if left < needs:
            table.add(label, variant, "", f"skipped ({left:.0f} s left)", unit)
            return
        t0 = time.perf_counter()
        try:
            value, params = fn()
            shown = f"{value:,.3g}" if value < 100 else f"{value:,.0f}"
            table.add(label, variant, f"{params:,}" if isinstance(params, int) else params, shown, unit)
        except Exception as exc:  # one failing variant must not cost the others
            traceback.print_exc()
            table.add(label, variant, "", f"failed: {type(exc).__name__}: {str(exc)[:80]}", unit)
        print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    sparse_ref = {**ref_spec, "first_layer": "sparse"}
    ref_in = sizes.ref_inputs
    ms_s = "simulated ms / s"
    if device.type == "cuda":
        row("bf16 matmul 8192^3", "random data", lambda: (matmul_ceiling(device, 8192), "-"), "TFLOP/s", 10)
    # the headline: reference TCN training through the Trainer
    row(ref_label, "train fp32 dense", lambda: train_throughput(ref_spec, ref_in, "fp32", sizes, device), ms_s, 40)
    row(ref_label, "train TF32 dense", lambda: train_throughput(ref_spec, ref_in, "tf32", sizes, device), ms_s, 30)
    row(ref_label, "train TF32 sparse", lambda: train_throughput(sparse_ref, ref_in, "tf32", sizes, device), ms_s, 30)
    row(ref_label, "train bf16 dense", lambda: train_throughput(ref_spec, ref_in, "bf16", sizes, device), ms_s, 30)
    row(ref_label, "train bf16 sparse", lambda: train_throughput(sparse_ref, ref_in, "bf16", sizes, device), ms_s, 30)
    row(ref_label, "densify only (sample)", lambda: (sizes.batch * sizes.window / sample_only(ref_in, sizes, device), "-"),
        ms_s, 10)
    if device.type == "cuda":
        row(ref_label, "train TF32 dense + CUDA graph", lambda: train_throughput(
            ref_spec, ref_in, "tf32", sizes, device, graph=True), ms_s, 30)
    # ELM: per-ms loop through autograd (reference) vs scan + hand-written backward
    reference = reference_elm_forward()
    elm_in = sizes.mid_inputs
    row("ELM d3 m16 w64", "train loop (reference)", lambda: train_throughput(
        ELM, elm_in, "tf32", sizes, device, forward=reference, iters=sizes.elm_iters), ms_s, 25)
    row("ELM d3 m16 w64", "train scan + BPTT", lambda: train_throughput(
        ELM, elm_in, "tf32", sizes, device, iters=sizes.elm_iters), ms_s, 20)
    if device.type == "cuda":
        row("ELM d3 m16 w64", "train scan + BPTT + CUDA graph", lambda: train_throughput(
            ELM, elm_in, "tf32", sizes, device, graph=True, iters=sizes.elm_iters), ms_s, 30)
    # inference: neuron-seconds per second
    mid_in, ns = sizes.mid_inputs, "neuron-s / s"
    for mode in ("tf32", "bf16"):
        for first in ("dense", "sparse"):
            row(f"TCN d3 w64, {mid_in} in, batch {sizes.infer_batch_mid}", f"infer {mode} {first}",
                lambda: (inference_throughput({**MID, "first_layer": first}, mid_in, sizes.infer_batch_mid,
                                              sizes.infer_ms, mode, sizes, device), "-"), ns, 10)
    for mode in ("tf32", "bf16"):
        for first in ("dense", "sparse"):
            row(f"{ref_label}, batch {sizes.infer_batch_ref}", f"infer {mode} {first}",
                lambda: (inference_throughput({**ref_spec, "first_layer": first}, ref_in, sizes.infer_batch_ref,
                                              sizes.infer_ms, mode, sizes, device), "-"), ns, 12)
    row("ELM d3 m16 w64, batch 512", "infer tf32", lambda: (inference_throughput(
        ELM, elm_in, 512 if device.type == "cuda" else 2, sizes.infer_ms, "tf32", sizes, device), "-"), ns, 15)
    # last: compilation may take long
    if device.type == "cuda":
        row(ref_label, "train TF32 dense + torch.compile", lambda: train_throughput(
            ref_spec, ref_in, "tf32", sizes, device, compile_model=True), ms_s, 100)
    table.write()
    print("\n" + table.text(), flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
