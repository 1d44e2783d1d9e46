"""Cost of the per-layer weight histograms in each epoch record, next to a training epoch of the same model.

    .venv/bin/python bench/histogram_cost.py [--repeats 50]
LeNet-300-100 (266 200 weights), one thread: `with_histograms` per epoch for a masked run (pruned weights are 0),
a splice run (dense weights: every value counted) and a dense run, and a 469-step (MNIST, batch 128) epoch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engine.networks import build_model
from worker.engine.pruning import Pruner
from worker.engine.records import dense_layer_stats, with_histograms
from worker.engine.training import train_step


def per_call(fn: object, repeats: int) -> float:
    assert callable(fn)
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    epoch = 469 * per_call(lambda: train_step(model, optimizer, x, y), 20)
    rows = []
    layers, _ = dense_layer_stats(model)
    rows.append(("dense (no mask)", per_call(lambda: with_histograms(layers, model, None), args.repeats)))
    for recovery in ("none", "splice"):
        pruned = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
        pruner = Pruner(pruned, torch.optim.SGD(pruned.parameters(), lr=0.01),
                        {"target_sparsity": 0.9, "schedule": {"kind": "one_shot", "start_epoch": 0},
                         "recovery": {"kind": recovery}}, epochs=1, steps_per_epoch=1, attach=False)
        pruner.start()
        stats, _ = pruner.epoch_stats()
        rows.append((f"90 % sparse, recovery {recovery}",
                     per_call(lambda: with_histograms(stats, pruned, pruner), args.repeats)))  # noqa: B023
    print(f"LeNet-300-100, 1 thread; a 469-step training epoch: {epoch:.2f} s\n")
    print("| run | histograms per epoch | share of the epoch |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.1f} ms | {100 * seconds / epoch:.2f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
