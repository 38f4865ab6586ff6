"""Learning curves at scale: how spike AUC grows with depth and with ground truth.

For each cell: simulate (or find) a calibrated dataset, then train one fixed TCN per
depth (width 64, first kernel 25, later kernels 5 with dilations 1, 2, 4, …, residual)
with the product's own Trainer on the first 1/8, 1/4, 1/2 and all of the training
split, and score each on validation and test with 95% cluster-bootstrap intervals.
Each depth's curve is fitted (``search/answer/learning_curve.py``) to say how much data a pass
at 0.99 would need. This is the evidence the shipped profiles are sized from.

    python bench/learning_curves.py --models l5pc_ampa,l5pc --simulations 768 --out results/

Runs without optuna and MLflow (the spaces import optuna for type annotations only), so
it can run on a bare GPU machine with NEURON, torch, pydantic and SQLAlchemy installed.
Results are written after every training (``learning_curves.json`` and ``.txt``), so a
run stopped by ``--budget`` keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

try:  # the spaces import optuna for type annotations only
    import optuna  # noqa: F401
except ImportError:
    sys.modules["optuna"] = types.ModuleType("optuna")
    sys.modules["optuna"].Trial = object  # type: ignore[attr-defined]

import torch

from neurosearch.search.answer.learning_curve import LearningCurve, describe, fit
from neurosearch.search.answer.metrics import Scorer
from neurosearch.search.config import TrainingSection
from neurosearch.search.training.data import SplitTensors
from neurosearch.search.training.train import Trainer, resolve_device
from neurosearch.simulators import SimulationSpec, generate
from neurosearch.spaces import InputMeta, get_family, n_params


def tcn_spec(depth: int, width: int) -> dict:
    return {
        "family": "tcn", "depth": depth, "width": width,
        "kernels": [25] + [5] * (depth - 1), "dilations": [1] + [2**j for j in range(depth - 1)],
        "residual": True, "norm": "none", "activation": "relu",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="l5pc_ampa,l5pc")
    parser.add_argument("--simulations", type=int, default=768)
    parser.add_argument("--duration-ms", type=int, default=2500)
    parser.add_argument("--depths", default="1,3,5")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--fractions", default="0.125,0.25,0.5,1")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--boot", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=Path("work/datasets"))
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--budget", type=float, default=1e9, help="seconds; stop starting trainings after this")
    args = parser.parse_args()
    started = time.perf_counter()
    device = resolve_device("auto")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    notes: list[str] = [f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}"]

    def save() -> None:
        (args.out / "learning_curves.json").write_text(json.dumps({"rows": rows, "notes": notes}, indent=1))
        (args.out / "learning_curves.txt").write_text("\n".join(notes) + "\n")

    settings = TrainingSection(epochs=args.epochs, batch_size=args.batch, window_ms=1000, burn_in_ms=300,
                               learning_rate=(args.lr, args.lr), patience=4)
    for model in args.models.split(","):
        spec = SimulationSpec(model=model, n_simulations=args.simulations, duration_ms=args.duration_ms + 500,
                              discard_ms=500, split=(0.6, 0.2, 0.2))
        t0 = time.perf_counter()
        dataset = generate(spec, args.cache, progress=False)
        notes.append(f"{model}: {dataset} in {time.perf_counter() - t0:.0f} s; NEURON "
                     f"{dataset.wall_s_per_simulated_s} wall-s per simulated s per core; {dataset.rate_summary()}")
        print(notes[-1], flush=True)
        save()
        meta = InputMeta(dataset.n_inputs, tuple(int(g) for g in dataset.input_group))
        full_train = dataset.indices("train")
        valid, test = SplitTensors(dataset, "valid", device), SplitTensors(dataset, "test", device)
        for depth in (int(d) for d in args.depths.split(",")):
            curve = LearningCurve("tcn", depth, -1, "spike_auc", 0.99, [], [])
            last_train_s = None
            for fraction in (float(f) for f in args.fractions.split(",")):
                if time.perf_counter() - started > args.budget:
                    notes.append(f"budget reached: {model} depth {depth} fraction {fraction} and later not run")
                    break
                n_train = max(2, round(len(full_train) * fraction))
                train = SplitTensors(dataset, "train", device, limit=n_train)
                torch.manual_seed(depth)
                net = get_family("tcn").build(tcn_spec(depth, args.width), meta)
                trainer = Trainer(net, train, valid, settings, args.lr, seed=depth)
                t0 = time.perf_counter()
                trainer.fit()
                trainer.restore_best()
                seconds = time.perf_counter() - t0
                row = {"model": model, "depth": depth, "params": n_params(net), "n_train": n_train,
                       "train_simulated_s": n_train * dataset.duration_ms / 1000, "epochs": len(trainer.history),
                       "best_epoch": trainer.best_epoch, "train_wall_s": round(seconds, 1)}
                for name, data in (("valid", valid), ("test", test)):
                    pred = trainer.predict(data)
                    scorer = Scorer(pred.spike_prob, pred.spike_true, pred.v_pred, pred.v_true)
                    point, interval = scorer.metrics(), scorer.intervals(args.boot, seed=0)
                    row[name] = {k: [round(point[k], 5), round(interval[k][0], 5), round(interval[k][1], 5)]
                                 for k in point}
                rows.append(row)
                v, t = row["valid"]["spike_auc"], row["test"]["spike_auc"]
                notes.append(f"{model} depth {depth} ({row['params']:,} params) train {n_train} sims: "
                             f"valid AUC {v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}], test {t[0]:.4f} [{t[1]:.4f}, {t[2]:.4f}], "
                             f"rmse {row['test']['voltage_rmse'][0]:.2f} mV, {len(trainer.history)} epochs, {seconds:.0f} s")
                print(notes[-1], flush=True)
                curve.train_seconds.append(row["train_simulated_s"])
                curve.values.append(v[0])
                last_train_s = seconds
                save()
            fit(curve, True, dataset.wall_s_per_simulated_s, last_train_s)
            notes.append(describe(curve))
            print(notes[-1], flush=True)
            save()
    notes.append(f"total {time.perf_counter() - started:.0f} s")
    save()


if __name__ == "__main__":
    main()
