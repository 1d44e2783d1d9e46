"""`tune_preset.py` with RigL's regrowth scored by the dense gradient summed over the last K steps before each drop
(an experiment, not an engine option).

    AVG_STEPS=20 AVG_SIGNED=1 .venv/bin/python bench/tune_avg_grad.py NAME rigl_99 --seed S \
        --data-dir ../shared/data/mnist --out FILE.jsonl

RigL scores a pruned weight by |dense gradient| of one batch (64 samples at the 99 % preset's batch size): a noisy
estimate, which may be why RigL ties with random regrowth and GMP here. This sums the gradient over the K steps
that end at each drop-and-grow step (`AVG_SIGNED=1`: |Σ g|, the expected gradient's size; `0`: Σ |g|) by patching
the regrowth from outside; the arguments and output are `tune_preset.py`'s. Result (README, "Regrowth at 99 %"):
no gain (K = 20: 1.96 ± 0.02 %, K = 100: 1.96 ± 0.09 %, against 1.92 ± 0.13 % for the preset on the same machine).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from worker.engine.pruning import recovery  # noqa: E402

STEPS = int(os.environ.get("AVG_STEPS", "20"))
SIGNED = os.environ.get("AVG_SIGNED", "1") == "1"


def wants_gradient(self: recovery.GradientRegrowth, step: int) -> bool:
    return any(self.drop_due(step + ahead) for ahead in range(STEPS))


def observe_gradient(self: recovery.GradientRegrowth, index: int, grad: torch.Tensor) -> None:
    value = grad if SIGNED else grad.abs()
    summed = self.grown_grad[index]
    self.grown_grad[index] = value.clone() if summed is None else summed.add_(value)


def grow_scores(self: recovery.GradientRegrowth, index: int, after_drop: torch.Tensor,
                inactive_before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    summed = self.grown_grad[index]
    assert summed is not None
    return summed.abs().reshape(-1), ~after_drop


if __name__ == "__main__":
    recovery.GradientRegrowth.wants_gradient = wants_gradient  # type: ignore[method-assign]
    recovery.GradientRegrowth.observe_gradient = observe_gradient  # type: ignore[method-assign]
    recovery.GradientRegrowth.grow_scores = grow_scores  # type: ignore[method-assign]
    sys.argv = ["tune_preset.py", *sys.argv[1:]]
    runpy.run_path(str(ROOT / "bench" / "tune_preset.py"), run_name="__main__")
