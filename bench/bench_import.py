"""`neurosearch import neuronio` on a file of the real size: speed and peak memory.

NeuronIO's files hold 128 simulations × 6 s each, with the dendritic voltages (639
segments × 6000 ms, float16) and ~80,000 input spikes per simulation stored as Python
lists of numpy int64 scalars (the generator's layout, tests/fixtures/neuronio/README.md).
This synthesises one such file (same keys, types, protocol and sizes; spike rates like
the fixture's), then imports it in a fresh process and reports the wall time, simulations
per second and the process's peak resident memory, beside what the paper's own loader
(a plain ``pickle.load``) takes in memory for the same file.

    python bench/bench_import.py [--simulations 128] [--seconds 6] [--keep FILE]

Prints a markdown section and appends it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import heading, publish

SEGMENTS = 639
EVENTS_PER_MS = 13.4  # the fixture's simulations: 40,287 input spikes in 3,000 ms


def synthesise(path: Path, n_sims: int, seconds: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ms = seconds * 1000
    params = {
        "numSimulations": n_sims, "totalSimDurationInSec": seconds, "collectAndSaveDVTs": True,
        "allSegmentsType": ["basal"] * 262 + ["apical"] * 377,
        "allSegmentsLength": list(rng.uniform(2, 40, SEGMENTS)),
        "allSegments_DistFromSoma": list(rng.uniform(17, 1300, SEGMENTS)),
        "allSegments_SectionInd": [i // 3 for i in range(SEGMENTS)],
    }
    per_train = EVENTS_PER_MS * ms / (2 * SEGMENTS)
    sims = []
    for _ in range(n_sims):
        trains = []
        for _kind in range(2):
            trains.append({np.int64(s): list(np.unique(rng.integers(0, ms, rng.poisson(per_train))).astype(np.int64))
                           for s in range(SEGMENTS)})
        sims.append({
            "recordingTimeHighRes": np.arange(0, ms, 0.125, dtype=np.float32),
            "somaVoltageHighRes": rng.normal(-70, 3, ms * 8).astype(np.float16),
            "nexusVoltageHighRes": rng.normal(-70, 3, ms * 8).astype(np.float16),
            "recordingTimeLowRes": np.arange(ms, dtype=np.float32),
            "somaVoltageLowRes": rng.normal(-70, 3, ms).astype(np.float16),
            "nexusVoltageLowRes": rng.normal(-70, 3, ms).astype(np.float16),
            "dendriticVoltagesLowRes": rng.normal(-70, 3, (SEGMENTS, ms)).astype(np.float16),
            "exInputSpikeTimes": trains[0],
            "inhInputSpikeTimes": trains[1],
            "outputSpikeTimes": np.sort(rng.uniform(0, ms, rng.poisson(6))).astype(np.float16),
        })
    with open(path, "wb") as handle:
        pickle.dump({"Params": params, "Results": {"listOfSingleSimulationDicts": sims}}, handle, protocol=2)


#: the process's own peak resident memory (VmHWM: ru_maxrss would carry the parent's peak over exec)
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"

IMPORT = """
import json, sys, time
from pathlib import Path
from neurosearch.simulators.importing import find_sources, import_dataset
start = time.perf_counter()
dataset = import_dataset("neuronio", find_sources("neuronio", {None: [Path(sys.argv[1])]}), Path(sys.argv[2]),
                         name="bench", progress=False)
wall = time.perf_counter() - start
events = sum(e["n_input_events"] for e in dataset.manifest["shards"])
print(json.dumps({"wall_s": wall, "peak_mib": PEAK,
                  "simulations": len(dataset), "events": events,
                  "dataset_mib": sum(f.stat().st_size for f in dataset.path.rglob("*") if f.is_file()) / 2**20}))
"""

PLAIN = """
import json, pickle, sys, time
start = time.perf_counter()
with open(sys.argv[1], "rb") as handle:
    data = pickle.load(handle, encoding="latin1")
print(json.dumps({"wall_s": time.perf_counter() - start, "peak_mib": PEAK}))
"""


def child(code: str, *args: str) -> dict:
    code = code.replace("PEAK", PEAK)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=128)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--keep", type=Path, help="write the synthetic file here and keep it (default: a temp folder)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")
    parser.add_argument("--synthesise-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.synthesise_only:
        synthesise(args.synthesise_only, args.simulations, args.seconds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = args.keep or Path(tmp) / "neuronio_like.p"
        start = time.perf_counter()
        if not source.exists():  # in a process of its own: this one stays small (its children start from it)
            subprocess.run([sys.executable, __file__, "--synthesise-only", str(source), "--simulations",
                            str(args.simulations), "--seconds", str(args.seconds)], check=True)
        made_s = time.perf_counter() - start
        size_mib = source.stat().st_size / 2**20
        ours = child(IMPORT, str(source), str(Path(tmp) / "cache"))
        plain = child(PLAIN, str(source))
    per_gib = 2**30 / 16
    lines = [
        heading("bench_import"),
        f"`python bench/bench_import.py --simulations {args.simulations} --seconds {args.seconds}` — one synthetic "
        f"NeuronIO file of {args.simulations} × {args.seconds} s with dendritic voltages, {size_mib:,.0f} MiB "
        f"({f'written in {made_s:.0f} s' if made_s >= 1 else 'written earlier'}), imported in a fresh process.\n",
        "| what | wall s | simulations / s | peak resident MiB |",
        "| --- | ---: | ---: | ---: |",
        f"| `import_dataset` (neurosearch import neuronio) | {ours['wall_s']:.1f} | "
        f"{ours['simulations'] / ours['wall_s']:.1f} | {ours['peak_mib']:,.0f} |",
        f"| plain `pickle.load` (the paper's loader reads it so) | {plain['wall_s']:.1f} | — | {plain['peak_mib']:,.0f} |",
        "",
        f"The imported dataset: {ours['simulations']} simulations, {ours['events']:,} input spikes, "
        f"{ours['dataset_mib']:,.0f} MiB on disk. On the training device each input spike takes 16 bytes "
        f"(an int64 key and an int64 input), so 1 GiB holds {per_gib / 1e6:.0f} million spikes: "
        f"{per_gib / (ours['events'] / ours['simulations']):,.0f} simulations like these "
        f"({ours['events'] / ours['simulations']:,.0f} spikes each) per GiB.",
    ]
    publish(lines, append=not args.no_append)


if __name__ == "__main__":
    main()
