"""Recipe comparison: one fixed architecture, one dataset, one training recipe.

Trains a given spec with the product's Trainer on a dataset folder made by
``neurosearch simulate`` and prints per-epoch validation AUC, then validation and test
figures with 95% cluster-bootstrap intervals (whole simulations resampled).
``--optimizer adam`` swaps in the project's earlier recipe (Adam at a constant rate, no
early stopping) for before/after comparisons on the same data and seed:

    python bench/bench_recipe.py work/datasets/<hash> --steps 30 --epochs 10 --optimizer adam
    python bench/bench_recipe.py work/datasets/<hash> --steps 30 --epochs 10 --schedule one-cycle
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neurosearch.search.answer.metrics import Scorer
from neurosearch.search.config import TrainingSection
from neurosearch.search.training.data import SplitTensors
from neurosearch.search.training.train import Trainer
from neurosearch.simulators import Dataset
from neurosearch.spaces import InputMeta, get_family, n_params

DEPTH3 = {"family": "tcn", "depth": 3, "width": 64, "kernels": [25, 5, 5], "dilations": [1, 2, 4],
          "residual": True, "norm": "none", "activation": "relu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--spec", default=json.dumps(DEPTH3), help="architecture spec (JSON)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="steps per epoch (0: one pass over the training split)")
    parser.add_argument("--schedule", choices=("constant", "one-cycle"), default="constant")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--patience", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--burn-in", type=int, default=100)
    parser.add_argument("--window", type=int, default=500, help="training window (ms), burn-in included")
    parser.add_argument("--optimizer", choices=("adamw", "adam"), default="adamw")
    parser.add_argument("--boot", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="weights, window order and dropout")
    args = parser.parse_args()
    dataset = Dataset.open(args.dataset, verify=False)
    device = torch.device("cpu")
    train, valid, test = (SplitTensors(dataset, split, device) for split in ("train", "valid", "test"))
    spec = json.loads(args.spec)
    torch.manual_seed(args.seed)
    model = get_family(spec["family"]).build(spec, InputMeta(dataset.n_inputs, tuple(int(g) for g in dataset.input_group)))
    settings = TrainingSection(epochs=args.epochs, steps_per_epoch=args.steps or None, batch_size=args.batch,
                               window_ms=args.window, burn_in_ms=args.burn_in, schedule=args.schedule,
                               weight_decay=args.weight_decay, patience=args.patience,
                               learning_rate=(args.lr, args.lr))
    started = time.perf_counter()
    trainer = Trainer(model, train, valid, settings, args.lr, seed=args.seed)
    if args.optimizer == "adam":  # the earlier recipe
        trainer.optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        trainer.scheduler = torch.optim.lr_scheduler.ConstantLR(trainer.optimizer, factor=1.0, total_iters=0)
    print(f"{n_params(model):,} params, {trainer.steps_per_epoch} steps per epoch", flush=True)
    trainer.fit(on_epoch=lambda r: print(f"epoch {r.epoch}: loss {r.train_loss:.4f}, validation spike_auc "
                                         f"{r.metrics['spike_auc']:.4f}, {r.seconds:.0f} s", flush=True))
    trainer.restore_best()
    for name, data in (("valid", valid), ("test", test)):
        pred = trainer.predict(data)
        scorer = Scorer(pred.spike_prob, pred.spike_true, pred.v_pred, pred.v_true)
        point, interval = scorer.metrics(), scorer.intervals(args.boot)
        print(name, len(data), " ".join(f"{k} {point[k]:.4f} [{interval[k][0]:.4f}, {interval[k][1]:.4f}]"
                                        for k in ("spike_auc", "spike_tpr", "voltage_rmse", "voltage_ev")))
    print(f"best epoch {trainer.best_epoch}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
