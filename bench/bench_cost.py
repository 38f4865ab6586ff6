"""Cost to answer: the same study question under two search plans, on the same dataset and seed.

Each plan is a whole `neurosearch run` (real processes, one shared dataset cache, one
SQLite file, its own study): the former plan (3 full trials per family and depth, pruned
only below the median of their depth, every planned trial run) against the shipped search
(successive halving within each family and depth, a trial stopped once its network clears
the target on validation, a depth stopped once its answer is settled; search.toml).
Reported per plan: trials by state, the **trial-seconds** (the sum of every trial's
training time, what a GPU budget pays), the wall time, and the answer (per family the
shallowest passing depth, and each depth's confirmed candidate with its test interval),
so "the same answer for less" can be read off one table; then how the ratio grows with
the families and depths searched (prefixes of the same two runs: each family and depth
is its own competition, so its trial-seconds do not depend on the others').

    python bench/bench_cost.py                                    # AMPA cell, 96 × 3 s, every family, depths 1–3
    python bench/bench_cost.py --threshold 0.97 --depths 1 2 3 4

Appends a markdown section to bench/RESULTS.md (``--no-append``: print only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import heading, publish

PLANS = {
    "former": {"study.trials_per_depth": 3, "training.pruning": "depth-median", "training.prune_warmup_epochs": 2,
               "study.stop_settled_depths": False},
    "shipped": {"study.trials_per_depth": 2, "training.pruning": "depth-halving", "training.halving_factor": 3,
                "training.prune_warmup_epochs": 1, "study.stop_settled_depths": True, "study.settle_after": 2},
}


def toml_value(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def config(args: argparse.Namespace, folder: Path) -> str:
    depths = ", ".join(map(str, args.depths))
    families = ", ".join(f'"{f}"' for f in args.families)
    spaces = "\n".join(f"[spaces.{f}]\ndepths = [{depths}]\n" for f in args.families)
    return f"""[study]
storage = "sqlite:///{folder}/optuna.db"
work_dir = "{folder}/work"
families = [{families}]
seed = {args.seed}
learning_curve = false

[tracking]
uri = "sqlite:///{folder}/mlflow.db"
artifacts = "{folder}/artifacts"

[target]
threshold = {args.threshold}

[training]
epochs = {args.epochs}

[simulator]
model = "{args.model}"
n_simulations = {args.simulations}
duration_ms = {args.duration_ms}
seed = {args.seed}

{spaces}"""


def run_plan(name: str, folder: Path, sets: dict) -> dict:
    command = [sys.executable, "-m", "neurosearch.search.cli", "run", "--no-progress", "--json", f"{name}.json",
               "--set", f'study.name="{name}"', *[x for k, v in sets.items() for x in ("--set", f"{k}={toml_value(v)}")]]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"plan {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    from neurosearch.search.study.reader import read_study

    study = read_study(f"sqlite:///{folder}/optuna.db", name)
    seconds = sum(float(t.user_attrs.get("train_seconds", 0.0)) for t in study.trials)
    return {"wall_s": wall, "trial_s": seconds, "report": json.loads((folder / f"{name}.json").read_text())}


def describe(report: dict) -> tuple[str, str, str]:
    trials = report["trials"]
    states = "/".join(str(trials.get(k, 0)) for k in ("COMPLETE", "PRUNED", "FAIL"))
    shallowest = ", ".join(f"{f} {d if d is not None else '—'}" for f, d in report["shallowest"].items())
    per_depth = "; ".join(
        f"{r['family']} {r['depth']}: {r['test'][0]:.4f} [{r['test'][1]:.4f}, {r['test'][2]:.4f}]"
        for r in report["rows"] if r.get("test"))
    return states, shallowest, per_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="l5pc_ampa")
    parser.add_argument("--simulations", type=int, default=96)
    parser.add_argument("--duration-ms", type=int, default=3000)
    parser.add_argument("--families", nargs="+", default=["tcn", "mlp", "deep_unit"])
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.99, help="the target's spike AUC")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "search.toml").write_text(config(args, folder))
        made = subprocess.run([sys.executable, "-m", "neurosearch.search.cli", "simulate", "--no-progress"], cwd=folder,
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise SystemExit(made.stdout + made.stderr)
        results = {name: run_plan(name, folder, sets) for name, sets in PLANS.items()}
    base = results["former"]["trial_s"]
    lines = [
        heading("bench_cost"),
        f"`python bench/bench_cost.py --model {args.model} --simulations {args.simulations} --duration-ms "
        f"{args.duration_ms} --families {' '.join(args.families)} --depths {' '.join(map(str, args.depths))} "
        f"--epochs {args.epochs} --seed {args.seed} --threshold {args.threshold}`: one dataset, one seed, each plan a whole `neurosearch run`.\n",
        "| plan | settings | trials c/p/f | trial-seconds | of former | wall s | shallowest passing | "
        "candidates on test [95%] |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, result in results.items():
        states, shallowest, per_depth = describe(result["report"])
        settings = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in PLANS[name].items())
        lines.append(f"| {name} | {settings} | {states} | {result['trial_s']:.0f} | "
                     f"{result['trial_s'] / base:.2f} | {result['wall_s']:.0f} | {shallowest} | {per_depth} |")
    former, shipped = (results[k]["report"] for k in ("former", "shipped"))
    same = former["shallowest"] == shipped["shallowest"]
    lines += ["", f"Same answer (shallowest passing depth per family): **{'yes' if same else 'no'}**"
              f" (former {former['shallowest']}, shipped {shipped['shallowest']}); {overlap(former, shipped)}.", "",
              "Shipped trial-seconds as a fraction of the former plan's, by the families and depths searched:", "",
              *growth(former, shipped, args.families, args.depths)]
    publish(lines, append=not args.no_append)


def overlap(former: dict, shipped: dict) -> str:
    """Whether each depth's two candidates agree within their test intervals (the
    intervals overlap): the same answer, not just the same verdict."""
    tests = {plan: {(r["family"], r["depth"]): r["test"] for r in report["rows"] if r.get("test")}
             for plan, report in (("former", former), ("shipped", shipped))}
    both = sorted(set(tests["former"]) & set(tests["shipped"]))
    apart = [f"{f} {d}" for f, d in both
             if tests["former"][(f, d)][2] < tests["shipped"][(f, d)][1]
             or tests["shipped"][(f, d)][2] < tests["former"][(f, d)][1]]
    return (f"of {len(both)} depths confirmed by both, the test intervals of "
            + (f"{', '.join(apart)} do not overlap" if apart else "every pair overlap"))


def growth(former: dict, shipped: dict, families: list[str], depths: list[int]) -> list[str]:
    """Trial-seconds of the shipped search as a fraction of the former plan's, for the
    first m families and the depths up to d: how the saving grows as a study widens."""
    def seconds(report: dict, fams: list[str], deepest: int) -> float:
        return sum(r["seconds"] for r in report["rows"] if r["family"] in fams and r["depth"] <= deepest)

    lines = ["| families searched | " + " | ".join(f"depths ≤ {d}" for d in depths) + " |",
             "| --- | " + " | ".join("---:" for _ in depths) + " |"]
    for m in range(1, len(families) + 1):
        fams = families[:m]
        cells = []
        for d in depths:
            base = seconds(former, fams, d)
            cells.append(f"{seconds(shipped, fams, d) / base:.2f}" if base else "—")
        lines.append(f"| {', '.join(fams)} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
