"""Ground-truth speed: simulated seconds per wall-second vs number of NEURON processes,
and per integrator ([simulator] integrator) against a fine fixed-step reference.

Default: generates the same small dataset (fresh, in a temporary cache) with 1, 2, 4, …
processes through the product's own ``generate`` and reports throughput, the scaling
efficiency against one process, and NEURON's wall-seconds per simulated second per
simulation (from the manifest).

``--methods``: runs the same stimuli on one core with each integrator (each in its own
fresh process, through the product's worker setup and ``CellRunner``) and compares spike
times (exact, not binned) and the 1 ms somatic voltage with a fixed-step run at
``--reference-dt``. The methods take turns for ``--repeats`` rounds and each stimulus
counts its best round (the machine may be shared).

    python bench/bench_simulate.py                        # l5pc, processes 1 and 2 (this machine's cores)
    python bench/bench_simulate.py --model l5pc_ampa --processes 1 2 4 8 16 --simulations 32
    python bench/bench_simulate.py --methods --stimuli 3 --duration-ms 2000
    python bench/bench_simulate.py --methods --model custom --mechanisms <l5pc>/mechanisms \\
        --morphology <l5pc>/C060114A7.asc --rate-scale 1 --stimuli 1 --duration-ms 500   # bench/detailed_cell.py

Prints a table and appends it to bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from results import heading, publish

from neurosearch.simulators import SimulationSpec, generate

MATCH_MS = 5.0  # a spike within this of a reference spike is the same spike

# (label, integrator, dt override or None = the cell's, cvode_atol, cache_efficient)
METHODS = (
    ("fixed (cell dt)", "fixed", None, 1e-3, False),
    ("fixed, cache_efficient", "fixed", None, 1e-3, True),
    ("fixed, dt 0.05", "fixed", 0.05, 1e-3, False),
    ("cvode atol 1e-3", "cvode", None, 1e-3, False),
    ("cvode atol 1e-3, cache_efficient", "cvode", None, 1e-3, True),
    ("cvode atol 1e-2", "cvode", None, 1e-2, False),
    ("coreneuron (cell dt)", "coreneuron", None, 1e-3, False),
)


_prepared: dict = {}


def _run_method(spec: SimulationSpec, dt_ms: float | None, cache_efficient: bool, seeds: list[int]) -> dict:
    """In this method's own worker process: run each seed's stimulus once; exact spike
    times, 1 ms voltage and wall time per stimulus. The cell is built on the first call."""
    from neurosearch.simulators import dataset, worker
    from neurosearch.simulators.stimulus import spike_trains

    if not _prepared:
        runner = worker.runner_for(dataset._worker_setup(spec))
        if dt_ms is not None:
            runner.cell.dt = dt_ms
        if cache_efficient:  # not a setting: measured here to see whether it should be one
            configure = runner._configure_integrator

            def configure_cache_efficient() -> None:
                configure()
                runner.h.CVode().cache_efficient(1)

            runner._configure_integrator = configure_cache_efficient
        _prepared["runner"] = runner
    runner = _prepared["runner"]
    spikes, voltages, walls, cpus = [], [], [], []
    for seed in seeds:
        inputs = runner.inputs
        index, ms = spike_trains(np.random.default_rng(seed), spec.stimulus, inputs.kind, inputs.group,
                                 spec.duration_ms)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = runner.run(index, ms, spec.duration_ms)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
        spikes.append(result.spike_times)
        voltages.append(result.voltage)
    return {"spikes": spikes, "voltage": voltages, "wall_s": walls, "cpu_s": cpus}


def _measure_all(methods: dict[str, tuple], seeds: list[int], rounds: int) -> dict[str, dict]:
    """Each method in its own long-lived process; the methods take turns, round after
    round, so a busy spell on a shared machine hits them all alike. Wall and CPU time
    per stimulus: the best of the rounds. The first method (the reference) runs once."""
    pools = {name: ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) for name in methods}
    results: dict[str, dict] = {}
    try:
        for round_ in range(rounds):
            for k, (name, (spec, dt_ms, cache_efficient)) in enumerate(methods.items()):
                if results.get(name, {}).get("error") or (k == 0 and round_ > 0):  # the reference: once
                    continue
                try:
                    got = pools[name].submit(_run_method, spec, dt_ms, cache_efficient, seeds).result()
                except Exception as exc:  # report what blocked a method instead of dropping the table
                    results[name] = {"error": str(exc).splitlines()[0]}
                    continue
                if name in results:
                    for key in ("wall_s", "cpu_s"):
                        got[key] = [min(a, b) for a, b in zip(results[name][key], got[key])]
                results[name] = got
    finally:
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)
    return results


def spike_difference(reference: np.ndarray, spikes: np.ndarray) -> tuple[list[float], int, int]:
    """|Δt| of matched spikes (each reference spike matched at most once, nearest first
    within MATCH_MS), and the missed and extra counts."""
    pairs = sorted((abs(r - s), i, j) for i, r in enumerate(reference) for j, s in enumerate(spikes)
                   if abs(r - s) <= MATCH_MS)
    used_r, used_s, deltas = set(), set(), []
    for d, i, j in pairs:
        if i not in used_r and j not in used_s:
            used_r.add(i), used_s.add(j), deltas.append(d)
    return deltas, len(reference) - len(deltas), len(spikes) - len(deltas)


def compare_methods(args: argparse.Namespace) -> str:
    """The integrator table: speed and answer of each method against a fine fixed step."""
    seeds = list(range(100, 100 + args.stimuli))
    custom = {"builder": args.builder, "mechanisms": args.mechanisms, "morphology": args.morphology}
    base = dict(model=args.model, custom=custom if args.model == "custom" else None, n_simulations=3,
                duration_ms=args.duration_ms, discard_ms=0, processes=1, split=(0.34, 0.33, 0.33),
                stimulus={"rate_scale": [args.rate_scale, args.rate_scale]})
    reference = f"reference: fixed, dt {args.reference_dt}"
    methods = {reference: (SimulationSpec(**base), args.reference_dt, False)}
    for label, integrator, dt_ms, atol, cache_efficient in METHODS:
        if integrator in args.integrators:
            methods[label] = (SimulationSpec(**base, integrator=integrator, cvode_atol=atol), dt_ms, cache_efficient)
    results = _measure_all(methods, seeds, args.repeats)
    ref = results[reference]
    simulated_s = len(seeds) * args.duration_ms / 1000
    n_ref = sum(len(s) for s in ref["spikes"])
    lines = [f"| method | wall-s / sim-s | CPU-s / sim-s | speed-up (CPU) | spike \\|Δt\\| median / max (ms) | "
             f"missed / extra (of {n_ref}) | V RMSE (mV) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    fixed_cpu = None
    for label, got in results.items():
        if "error" in got:
            lines.append(f"| {label} | failed: {got['error']} | | | | | |")
            continue
        speed, cpu = sum(got["wall_s"]) / simulated_s, sum(got["cpu_s"]) / simulated_s
        if label == reference:
            lines.append(f"| {label} | {speed:.3f} | {cpu:.3f} | | | | |")
            continue
        deltas, missed, extra = [], 0, 0
        for r, s in zip(ref["spikes"], got["spikes"]):
            d, m, e = spike_difference(r, s)
            deltas += d
            missed, extra = missed + m, extra + e
        rmse = float(np.sqrt(np.mean(np.concatenate([(a - b) ** 2 for a, b in zip(ref["voltage"], got["voltage"])]))))
        fixed_cpu = fixed_cpu or cpu
        dt_text = f"{np.median(deltas):.3f} / {np.max(deltas):.3f}" if deltas else "–"
        lines.append(f"| {label} | {speed:.3f} | {cpu:.3f} | {fixed_cpu / cpu:.2f}× | {dt_text} | {missed} / {extra} | "
                     f"{rmse:.2f} |")
    return (f"model {args.model}, {args.stimuli} stimuli × {args.duration_ms} ms (rate_scale {args.rate_scale}), "
            f"each method in its own process on one core, methods taking turns for {args.repeats} rounds, "
            f"best round per stimulus (speed-up: CPU time against fixed step at the cell's dt)\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="l5pc")
    parser.add_argument("--processes", type=int, nargs="+", default=sorted({1, cores}))
    parser.add_argument("--simulations", type=int, default=0, help="per run (default: 4 per process of the largest run)")
    parser.add_argument("--duration-ms", type=int, default=2500)
    parser.add_argument("--methods", action="store_true", help="compare integrators instead of process counts")
    parser.add_argument("--integrators", nargs="+", default=["fixed", "cvode", "coreneuron"])
    parser.add_argument("--stimuli", type=int, default=3, help="--methods: stimuli (seeds) per method")
    parser.add_argument("--repeats", type=int, default=2, help="--methods: rounds (the best per stimulus counts)")
    parser.add_argument("--reference-dt", type=float, default=0.005)
    parser.add_argument("--rate-scale", type=float, default=1.5, help="--methods: the drive (no calibration)")
    parser.add_argument("--builder", default="bench/detailed_cell.py:build", help="--model custom: the cell builder")
    parser.add_argument("--mechanisms", help="--model custom: its mechanism folder")
    parser.add_argument("--morphology", help="--model custom: its morphology file")
    args = parser.parse_args()
    if args.methods:
        publish(heading("bench_simulate --methods") + "\n"
                f"`python bench/bench_simulate.py {' '.join(sys.argv[1:])}` — " + compare_methods(args))
        return
    n = args.simulations or 4 * max(args.processes)

    rows = []
    base = None
    for procs in args.processes:
        with tempfile.TemporaryDirectory() as cache:
            spec = SimulationSpec(model=args.model, n_simulations=n, duration_ms=args.duration_ms, discard_ms=500,
                                  processes=procs)
            start = time.perf_counter()
            ds = generate(spec, Path(cache), progress=False)
            wall = time.perf_counter() - start
        simulated = n * args.duration_ms / 1000
        rate = simulated / wall
        base = base or rate / procs  # per-process rate of the first (smallest) run
        rows.append((procs, wall, rate, rate / (base * procs), ds.wall_s_per_simulated_s))

    lines = ["| processes | wall s | simulated s / wall s | scaling efficiency | NEURON wall-s per simulated s (per sim) |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for procs, wall, rate, eff, per_sim in rows:
        lines.append(f"| {procs} | {wall:.1f} | {rate:.2f} | {eff:.0%} | {per_sim:.3f} |")
    publish(heading("bench_simulate") + "\n"
            f"`python bench/bench_simulate.py {' '.join(sys.argv[1:])}` — model {args.model}, {n} simulations × "
            f"{args.duration_ms} ms per run (incl. mechanism load and process start-up)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
