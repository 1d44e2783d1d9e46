"""`tune_preset.py` with a grace period for regrown weights (an experiment, not an engine option).

    .venv/bin/python bench/tune_grace.py NAME PRESET --seed S --data-dir ../shared/data/mnist --out FILE.jsonl

Weights a drop-and-grow regrows (RigL's start at zero, SET's small) are the first candidates for the next mask
update: the ramp's magnitude cut and the next drop. Here each regrown weight scores +inf at that next update
(one interval of protection), by patching the magnitude criterion and the regrowth from outside; the arguments
and output are `tune_preset.py`'s. Result (README, "Regrowth at 99 %"): no gain.
"""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from worker.engine.pruning import criteria, recovery  # noqa: E402

_drop_and_grow = recovery.RandomRegrowth.drop_and_grow
_weight_scores = criteria.Magnitude.weight_scores


def drop_and_grow(self: recovery.RandomRegrowth, step: int, pruner: Any) -> None:
    before = [layer.mask.clone() for layer in self.layers]
    _drop_and_grow(self, step, pruner)
    pruner.criterion.grace = [(layer.mask & ~old).reshape(-1).nonzero().flatten()
                              for layer, old in zip(self.layers, before, strict=True)]


def weight_scores(self: criteria.Magnitude, index: int) -> torch.Tensor:
    scores = _weight_scores(self, index)
    grace = getattr(self, "grace", None)
    if grace is not None and grace[index].numel():
        scores = scores.clone()
        scores.view(-1)[grace[index]] = math.inf
    return scores


if __name__ == "__main__":
    recovery.RandomRegrowth.drop_and_grow = drop_and_grow  # type: ignore[method-assign]
    criteria.Magnitude.weight_scores = weight_scores  # type: ignore[method-assign]
    sys.argv = ["tune_preset.py", *sys.argv[1:]]
    runpy.run_path(str(ROOT / "bench" / "tune_preset.py"), run_name="__main__")
