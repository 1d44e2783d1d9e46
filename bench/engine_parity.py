"""The engine against a plain PyTorch loop (bench/plain_loop.py) at identical hyperparameters, over seeds.

    .venv/bin/python bench/engine_parity.py --data-dir ../shared/data/mnist [--seeds 0 1 2 3 4] [--epochs 40]
        [--batch-size 128] [--lr 0.1] [--momentum 0.9] [--weight-decay 5e-5] [--target 0.98]
        [--start-epoch 1] [--end-epoch 24] [--every-steps 100]

LeNet-300-100 on MNIST, global magnitude pruning to 98 % on a cubic schedule (first update at the end of
epoch 1, target at the end of epoch 24, every 100 steps), batch 128, SGD 0.1 / momentum 0.9 / weight decay
5e-5, cosine; every one of these is a flag, passed to both sides. Prints each seed's final test error for
both, the mean difference, and the largest per-epoch sparsity difference. Target: mean error within 0.1 point
of the plain loop; the same sparsity every epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Hyper:
    """The hyperparameters both sides run at; each is a flag of `bench/plain_loop.py` and a field of the contract."""

    epochs: int = 40
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    target: float = 0.98
    start_epoch: int = 1
    end_epoch: int = 24
    every_steps: int = 100

    def plain_flags(self) -> list[str]:
        return [flag for name, value in asdict(self).items() for flag in (f"--{name.replace('_', '-')}", str(value))]


def engine_config(seed: int, hyper: Hyper) -> dict:
    return {
        "name": f"parity-{seed}", "model": {"name": "lenet300_100"}, "dataset": {"name": "mnist"},
        "training": {"epochs": hyper.epochs, "batch_size": hyper.batch_size, "optimizer": "sgd", "lr": hyper.lr,
                     "momentum": hyper.momentum, "weight_decay": hyper.weight_decay, "lr_schedule": "cosine",
                     "seed": seed},
        "pruning": {"criterion": "magnitude", "granularity": "unstructured", "scope": "global",
                    "target_sparsity": hyper.target, "recovery": {"kind": "none"},
                    "schedule": {"kind": "cubic", "start_epoch": hyper.start_epoch, "end_epoch": hyper.end_epoch,
                                 "every_steps": hyper.every_steps}},
    }


def run_plain(data_dir: Path, seed: int, hyper: Hyper) -> list[dict]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "plain_loop.py"), "--data-dir", str(data_dir),
                          "--seed", str(seed), *hyper.plain_flags()],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run_engine(data_dir: Path, seed: int, hyper: Hyper) -> list[dict]:
    from prunescope.contract import parse_run_config
    from worker.engine.training import run_training

    records: list[dict] = []
    run_training(parse_run_config(engine_config(seed, hyper)), data_dir=data_dir, device="cpu",
                 on_epoch=lambda record, _masks: records.append(record.model_dump()))
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    for field in fields(Hyper):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine_parity.jsonl",
                        help="each seed's result is appended here as one JSON line as soon as it is done")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both sides on one thread: the same arithmetic, and the machine is shared
    hyper = Hyper(**{field.name: getattr(args, field.name) for field in fields(Hyper)})

    plain_err, engine_err, worst_gap = [], [], 0.0
    print(f"{'seed':>4} {'plain error %':>14} {'engine error %':>15} {'max |Δ sparsity|':>17} {'s plain':>8} "
          f"{'s engine':>9}", flush=True)
    for seed in args.seeds:
        started = time.perf_counter()
        plain = run_plain(args.data_dir, seed, hyper)
        plain_s = time.perf_counter() - started
        started = time.perf_counter()
        engine = run_engine(args.data_dir, seed, hyper)
        engine_s = time.perf_counter() - started
        gap = max(abs(p["sparsity"] - e["sparsity"]) for p, e in zip(plain, engine, strict=True))
        worst_gap = max(worst_gap, gap)
        plain_err.append(100 * (1 - plain[-1]["test_acc"]))
        engine_err.append(100 * (1 - engine[-1]["test_acc"]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps({"seed": seed, **asdict(hyper),
                                     "plain_error": plain_err[-1], "engine_error": engine_err[-1],
                                     "max_sparsity_gap": gap, "plain_seconds": plain_s,
                                     "engine_seconds": engine_s}) + "\n")
        print(f"{seed:>4} {plain_err[-1]:>14.2f} {engine_err[-1]:>15.2f} {gap:>17.5f} {plain_s:>8.0f} "
              f"{engine_s:>9.0f}", flush=True)
    diff = statistics.mean(engine_err) - statistics.mean(plain_err)
    print(f"mean error: plain {statistics.mean(plain_err):.2f} %, engine {statistics.mean(engine_err):.2f} % "
          f"(engine - plain = {diff:+.2f} point; target ≤ +0.10); largest per-epoch sparsity gap {worst_gap:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
