"""Cost of pruning: a masked training epoch vs a dense one vs torch.nn.utils.prune's hooks, side by side.

    .venv/bin/python bench/engine_cost.py [--samples 60000] [--epochs 3] [--chunk 25]
LeNet-300-100 on MNIST-shaped random data, SGD with momentum, batch 128, one thread. The variants take
turns every `--chunk` steps (so load from other processes hits them alike); an epoch's time is the
median chunk time x chunks per epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engine.networks import build_model
from worker.engine.pruning import Pruner
from worker.engine.training import train_step

PRUNINGS = {
    "masked (none: gmp/han)": {"target_sparsity": 0.9, "schedule": {"kind": "constant", "start_epoch": 0}},
    "masked (splice: dns)": {"target_sparsity": 0.9, "scope": "global",
                             "schedule": {"kind": "constant", "start_epoch": 0},
                             "recovery": {"kind": "splice"}},
    "masked (gradient: rigl)": {"target_sparsity": 0.9, "schedule": {"kind": "constant", "start_epoch": 0},
                                "recovery": {"kind": "gradient", "every_steps": 100}},
}


def make_variant(name: str) -> tuple[nn.Module, torch.optim.Optimizer, Pruner | None]:
    torch.manual_seed(0)
    model = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
    if name == "torch.nn.utils.prune hooks":
        for module in model.modules():
            if isinstance(module, nn.Linear):
                prune.l1_unstructured(module, "weight", amount=0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pruner = None
    if name in PRUNINGS:
        pruner = Pruner(model, optimizer, PRUNINGS[name], epochs=10**6, steps_per_epoch=10**6, attach=False)
        pruner.start()
    return model, optimizer, pruner


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, pruner: Pruner | None, x: torch.Tensor,
                y: torch.Tensor, batches: list[torch.Tensor]) -> float:
    """The engine's own `train_step` over `batches`; returns seconds."""
    start = time.perf_counter()
    for index in batches:
        train_step(model, optimizer, x[index], y[index], pruner)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=25, help="steps per turn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (args.samples,), generator=gen)
    batch = 128
    names = ["dense", *PRUNINGS, "torch.nn.utils.prune hooks"]
    variants = {name: make_variant(name) for name in names}
    steps_per_epoch = -(-args.samples // batch)
    chunks: dict[str, list[float]] = {name: [] for name in names}
    recording: list[float] = []
    for epoch_index in range(args.epochs + 1):  # the first pass is a warm-up
        order = torch.randperm(args.samples, generator=gen)
        batches = [order[i: i + batch] for i in range(0, args.samples, batch)]
        for turn, first in enumerate(range(0, len(batches), args.chunk)):
            part = batches[first: first + args.chunk]
            if len(part) < args.chunk:
                continue
            shift = turn % len(names)  # rotate who goes first: caches and neighbours' load hit all alike
            for name in names[shift:] + names[:shift]:
                seconds = train_steps(*variants[name], x, y, part)
                if epoch_index > 0:
                    chunks[name].append(seconds)
        pruner = variants["masked (splice: dns)"][2]
        assert pruner is not None
        start = time.perf_counter()
        pruner.epoch_stats()
        recording.append(time.perf_counter() - start)
    # Other processes only ever add time: the 10th-percentile chunk is the least disturbed estimate.
    best = {name: statistics.quantiles(c, n=10)[0] * steps_per_epoch / args.chunk for name, c in chunks.items()}
    median = {name: statistics.median(c) * steps_per_epoch / args.chunk for name, c in chunks.items()}
    print(f"LeNet-300-100, {args.samples} samples/epoch ({steps_per_epoch} steps of {batch}), SGD momentum, "
          f"1 thread; {len(chunks['dense'])} interleaved chunks of {args.chunk} steps per variant")
    print(f"{'variant':30} {'epoch s p10':>11} {'x dense':>8} {'epoch s p50':>11} {'x dense':>8}")
    for name in names:
        print(f"{name:30} {best[name]:11.3f} {best[name] / best['dense']:8.3f} "
              f"{median[name]:11.3f} {median[name] / median['dense']:8.3f}")
    dense = median["dense"]
    record = statistics.median(recording)
    print(f"recording (stats + masks of an epoch): {record * 1000:.2f} ms = {100 * record / dense:.3f} % of an epoch")


if __name__ == "__main__":
    main()
