"""Ground-truth speed: simulated seconds per wall-second vs number of NEURON processes.

Generates the same small dataset (fresh, in a temporary cache) with 1, 2, 4, …
processes through the product's own ``generate`` and reports throughput, the scaling
efficiency against one process, and NEURON's wall-seconds per simulated second per
simulation (from the manifest).

    python bench/bench_simulate.py                        # l5pc, processes 1 and 2 (this machine's cores)
    python bench/bench_simulate.py --model l5pc_ampa --processes 1 2 4 8 16 --simulations 32

Prints a table and appends it to bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from neurosearch.simulators import SimulationSpec, generate

RESULTS = Path(__file__).with_name("RESULTS.md")


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="l5pc")
    parser.add_argument("--processes", type=int, nargs="+", default=sorted({1, cores}))
    parser.add_argument("--simulations", type=int, default=0, help="per run (default: 4 per process of the largest run)")
    parser.add_argument("--duration-ms", type=int, default=2500)
    args = parser.parse_args()
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
    machine = f"{platform.node()} ({platform.processor() or platform.machine()}, {cores} cores)"
    text = (f"\n## bench_simulate — {dt.date.today()} — {machine}\n\n"
            f"`python bench/bench_simulate.py {' '.join(sys.argv[1:])}` — model {args.model}, {n} simulations × "
            f"{args.duration_ms} ms per run (incl. mechanism load and process start-up)\n\n" + "\n".join(lines) + "\n")
    print(text)
    with RESULTS.open("a") as out:
        out.write(text)


if __name__ == "__main__":
    main()
