"""A plain PyTorch pruning loop, no prunescope imports: the reference the engine is measured against.

    .venv/bin/python bench/plain_loop.py --data-dir ../shared/data/mnist --seed 0 [--epochs 40]

LeNet-300-100 on MNIST; global magnitude pruning on Zhu & Gupta's cubic schedule; masks applied to the
weights after every optimizer step and to the gradients before it; momentum buffers masked when a mask changes.
Schedule semantics (the same definition prunescope documents): epochs count from 1; the first mask update is
at the end of epoch `start_epoch` (0: before the first step), the target is reached at the end of epoch
`end_epoch`, and masks are updated every `every_steps` optimizer steps in between. One JSON line per epoch.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist(data_dir: Path) -> tuple[torch.Tensor, ...]:
    raw = data_dir / "MNIST" / "raw"

    def images(name: str) -> torch.Tensor:
        x = torch.from_numpy(read_idx(raw / name).astype(np.float32) / 255.0).unsqueeze(1)
        return (x - 0.1307) / 0.3081

    def labels(name: str) -> torch.Tensor:
        return torch.from_numpy(read_idx(raw / name).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def cubic(step: int, t0: int, t_end: int, final: float) -> float:
    if step < t0:
        return 0.0
    if step >= t_end or t_end == t0:
        return final
    return final * (1 - (1 - (step - t0) / (t_end - t0)) ** 3)


def update_due(step: int, t0: int, t_end: int, every: int) -> bool:
    return t0 <= step <= t_end and ((step - t0) % every == 0 or step == t_end)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-5)
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--start-epoch", type=int, default=1)
    parser.add_argument("--end-epoch", type=int, default=24)
    parser.add_argument("--every-steps", type=int, default=100)
    args = parser.parse_args()

    torch.set_num_threads(1)  # the engine's benchmark runs on one thread too: the same arithmetic
    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = mnist(args.data_dir)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                          nn.Linear(100, 10))
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    masks = [torch.ones_like(w, dtype=torch.bool) for w in weights]
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_y) / args.batch_size)
    total = args.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    t0, t_end = args.start_epoch * steps_per_epoch, args.end_epoch * steps_per_epoch
    shuffle = torch.Generator().manual_seed(args.seed)

    def prune(step: int) -> None:
        sparsity = cubic(step, t0, t_end, args.target)
        scores = torch.cat([w.detach().abs().flatten() for w in weights])
        n_prune = round(sparsity * scores.numel())
        if n_prune == 0:
            return
        cut = torch.kthvalue(scores, n_prune).values
        with torch.no_grad():
            for w, m in zip(weights, masks, strict=True):
                m &= w.abs() > cut
                w.mul_(m)
                buf = optimizer.state.get(w, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(m)

    step = 0
    if update_due(0, t0, t_end, args.every_steps):
        prune(0)
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_y), generator=shuffle)
        loss_sum = 0.0
        for start in range(0, len(train_y), args.batch_size):
            index = order[start: start + args.batch_size]
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for w, m in zip(weights, masks, strict=True):
                w.grad.mul_(m)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                for w, m in zip(weights, masks, strict=True):
                    w.mul_(m)  # weight decay and momentum cannot revive a pruned weight
            step += 1
            if update_due(step, t0, t_end, args.every_steps):
                prune(step)
            loss_sum += float(loss.detach()) * len(index)
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(test_x[i: i + 1024]).argmax(1) == test_y[i: i + 1024]).sum())
                          for i in range(0, len(test_y), 1024))
        kept = sum(int(m.sum()) for m in masks)
        print(json.dumps({"epoch": epoch, "train_loss": loss_sum / len(train_y), "test_acc": correct / len(test_y),
                          "sparsity": 1 - kept / sum(m.numel() for m in masks)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
