"""Throughput of ResNet-20 dense vs RigL at 90 % sparsity, per precision / memory format / compile setting.

    .venv/bin/python bench/gpu_check.py [--device cuda|cpu] [--steps 200] [--warmup 30] [--batch 128]
Synthetic CIFAR-shaped data (10 000 random 3x32x32 images, 10 classes) on the device, SGD with momentum, the
engine's own `train_step` and `Compute` (so the loop measured is the managed loop). For each setting it prints
images/s of the dense and the RigL model, the masked/dense time ratio, and checks that the masks stayed exact
(pruned weights exactly 0, sparsity where the masks say). On CUDA the settings add fp16 (loss scaling),
channels-last and torch.compile (`--no-compile` skips the compile rows, which pay a compile time first).
A CPU run with a small `--steps` is a smoke check only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunescope.contract.config import TrainingConfig
from worker.engine.networks import build_model
from worker.engine.precision import Compute
from worker.engine.pruning import Pruner
from worker.engine.training import train_step

TARGET = 0.9
RIGL = {"target_sparsity": TARGET, "schedule": {"kind": "constant", "start_epoch": 0},
        "recovery": {"kind": "gradient", "every_steps": 100}}


def settings(device: str, compile_rows: bool) -> list[TrainingConfig]:
    rows = [TrainingConfig(precision="fp32"), TrainingConfig(precision="bf16")]
    if device == "cuda":
        rows += [TrainingConfig(precision="fp16"), TrainingConfig(precision="fp32", channels_last=True),
                 TrainingConfig(precision="bf16", channels_last=True)]
        if compile_rows:
            rows += [TrainingConfig(precision="bf16", channels_last=True, compile=True)]
    return rows


def label(training: TrainingConfig) -> str:
    parts: list[str] = [training.precision]
    if training.channels_last:
        parts.append("channels-last")
    if training.compile:
        parts.append("compile")
    return " + ".join(parts)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(training: TrainingConfig, pruned: bool, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
            ) -> tuple[float, bool]:
    """Images/s over `args.steps` timed steps (after warm-up), and whether the masks stayed exact."""
    torch.manual_seed(0)
    compute = Compute.for_run(training, args.device)
    model = build_model({"name": "resnet20"}, (3, 32, 32), 10).to(args.device)
    forward = compute.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = len(y) // args.batch
    pruner = None
    if pruned:
        pruner = Pruner(model, optimizer, RIGL, epochs=10**6, steps_per_epoch=steps_per_epoch, attach=False)
        pruner.start()
    gen = torch.Generator().manual_seed(0)

    def run(steps: int) -> None:
        for _ in range(steps):
            index = torch.randint(0, len(y), (args.batch,), generator=gen).to(args.device)
            train_step(forward, optimizer, x[index], y[index], pruner, compute=compute)

    run(args.warmup)
    sync(args.device)
    start = time.perf_counter()
    run(args.steps)
    sync(args.device)
    seconds = time.perf_counter() - start
    exact = True
    if pruner is not None:
        kept = sum(int(layer.mask.sum()) for layer in pruner.layers)
        total = sum(layer.mask.numel() for layer in pruner.layers)
        exact = all(int(torch.count_nonzero(layer.weight.detach()[~layer.mask])) == 0 for layer in pruner.layers)
        exact = exact and abs(1 - kept / total - TARGET) < 1e-3
    return args.steps * args.batch / seconds, exact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200, help="timed optimizer steps per row and model")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first (cuDNN autotune, compile)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row on CUDA")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(args.images, 3, 32, 32, generator=gen).to(args.device)
    y = torch.randint(0, 10, (args.images,), generator=gen).to(args.device)
    print(f"ResNet-20, synthetic CIFAR-shaped data ({args.images} images), batch {args.batch}, {args.steps} timed "
          f"steps after {args.warmup}; {name}; torch {torch.__version__}\n")
    print("| setting | dense img/s | RigL 90 % img/s | masked/dense time | masks exact |")
    print("|---|---:|---:|---:|---|")
    ok = True
    for training in settings(args.device, not args.no_compile):
        dense, _ = measure(training, False, x, y, args)
        rigl, exact = measure(training, True, x, y, args)
        ok = ok and exact
        print(f"| {label(training)} | {dense:,.0f} | {rigl:,.0f} | {dense / rigl:.2f}x | "
              f"{'yes' if exact else 'NO'} |", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
