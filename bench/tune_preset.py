"""One tuning run: a paper-table preset on full MNIST with some fields overridden, one thread, appended as JSON.

    .venv/bin/python bench/tune_preset.py NAME PRESET --seed 0 [--epochs 60] \
        [--set pruning.recovery.drop_fraction=0.5 ...] [--out bench/results/tuning_99_v5.jsonl]

The config is exactly the paper table's row config (`paper_table.row_config`: the preset on full MNIST,
epoch-valued schedule fields scaled with --epochs), then each --set (a dotted path and a JSON value). The line
written holds the name, the preset, the overrides, the final-epoch test error (%), each layer's final
sparsity and the trajectory (epoch, train loss, test accuracy, sparsity); a run the guards stop is written
with `failed`. A field the preset leaves out can be set too (the contract refuses unknown ones).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_table import row_config

from prunescope.contract import EpochRecord
from prunescope.presets import load_presets
from worker.engine.guards import TrainingDiverged
from worker.engine.training import run_training


def override(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for depth, key in enumerate(parents):
        if not isinstance(config.get(key), dict):
            raise SystemExit(f"--set {path}: the preset has no section {'.'.join(parents[:depth + 1])}")
        config = config[key]
    config[last] = value  # a field the preset leaves out may be set too: the contract refuses unknown ones


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="PATH=JSON")
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/mnist"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/tuning_99_v5.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    presets = load_presets()
    if args.preset not in presets:
        raise SystemExit(f"no preset named {args.preset}")
    config = row_config(presets[args.preset], args.epochs)
    overrides = {}
    for item in args.set:
        path, _, raw = item.partition("=")
        overrides[path] = json.loads(raw)
        override(config, path, overrides[path])
    config["training"]["seed"] = args.seed
    started, trajectory, layers = time.time(), [], {}

    def progress(record: EpochRecord, masks: dict) -> None:
        trajectory.append([record.epoch, round(record.train_loss, 4), record.test_acc, round(record.sparsity, 4)])
        layers.update({layer.name: round(layer.sparsity, 5) for layer in record.layers})
        print(f"[{args.name} seed {args.seed}] epoch {record.epoch} test_acc={record.test_acc:.4f} "
              f"sparsity={record.sparsity:.4f} loss={record.train_loss:.4f} {time.time() - started:.0f}s",
              file=sys.stderr, flush=True)

    try:
        summary = run_training(config, data_dir=args.data_dir, device="cpu", on_epoch=progress)
        error, failed = round(100 * (1 - summary.final_test_acc), 3), None
    except TrainingDiverged as exc:
        error, failed = None, str(exc)
    result = {"name": args.name, "preset": args.preset, "epochs": config["training"]["epochs"], "seed": args.seed,
              "overrides": overrides, "error": error, "failed": failed, "wall": round(time.time() - started),
              "layers": layers, "traj": trajectory}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        handle.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "traj"}))


if __name__ == "__main__":
    main()
