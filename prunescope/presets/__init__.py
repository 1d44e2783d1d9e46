"""Named run configs (`GET /api/presets`): the papers' LeNet-300-100 setups on MNIST, as plain JSON (no torch).

Their mask-update intervals are counted in steps of MNIST (469 per epoch); on `digits` (12 per epoch)
lower `every_steps` to match.
"""

from __future__ import annotations

import json
from pathlib import Path

PRESET_DIR = Path(__file__).parent

# One line per preset for the form; kept here because RunConfig has no `description` field.
DESCRIPTIONS: dict[str, str] = {
    "dense": "No pruning: the baseline every comparison needs.",
    "han2015": "Han et al. 2015: train, prune |w| < q·std per layer once (q = 1.78: 92 %), retrain (no "
               "recovery); batch 64, weight decay 5e-4.",
    "dns": "Dynamic Network Surgery (Guo et al. 2016): gradual magnitude pruning to 98.2 % with splicing "
           "(hysteresis) recovery, at SGD 0.1 / momentum 0.9 / weight decay 5e-4.",
    "gmp": "Gradual magnitude pruning (Zhu & Gupta 2017): cubic schedule, pruned weights stay pruned.",
    "set": "Sparse Evolutionary Training (Mocanu et al. 2018): sparse from the start, drop weakest, regrow at random.",
    "rigl": "RigL (Evci et al. 2020): sparse from the start, drop weakest, regrow where the gradient is largest.",
    "dpf": "Dynamic Pruning with Feedback (Lin et al. 2020): pruned-model gradient updates the dense weights.",
    "one_shot": "One-shot global magnitude pruning after 10 dense epochs, then fine-tuning.",
    "gmp_92": "GMP to 92 % (ERK per layer, batch 64, training images shifted ≤ 2 px): the paper table's "
              "Han 2015 row (1.59 % there).",
    "gmp_98_2": "GMP to 98.2 % (ERK per layer, batch 64, training images shifted ≤ 2 px): the paper table's "
                "DNS row (1.99 % there).",
    "gmp_98_5": "GMP to 98.5 % (ERK per layer, batch 64, training images shifted ≤ 2 px): the paper table's "
                "Sparse VD row (1.92 % there).",
    "gmp_99": "GMP to 99 % (ERK per layer, batch 64, weight decay 5e-4): the baseline rigl_99 and set_99 are "
              "measured against.",
    "rigl_99": "RigL at 99 % from a dense start: GMP's cubic ramp, and every 100 steps the weakest 10 % "
               "(cosine-decayed) regrow where the gradient is largest, until epoch 25 (ten epochs past the ramp).",
    "set_99": "SET at 99 % from a dense start: GMP's cubic ramp, and every 100 steps the weakest 10 % "
              "(cosine-decayed) regrow at random, until epoch 25 (ten epochs past the ramp).",
    "lenet5_99": "LeNet-5 at 99 % with DNS splicing (margin 0.1), 20 epochs, images shifted ≤ 2 px: the paper "
                 "table's sparse momentum row.",
    "lenet5_99_6": "LeNet-5 at 99.6 % (280x), 60 epochs: global magnitude pruning on a cubic ramp from epoch "
                   "2 to 40, pruned weights stay pruned, weight decay 5e-4, images shifted ≤ 2 px: the paper "
                   "table's Sparse VD row.",
}


def load_presets() -> dict[str, dict]:
    """Every preset run config, by name (in a stable order)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(PRESET_DIR.glob("*.json"))}
