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
    "han2015": "Han et al. 2015: train, prune |w| < q·std per layer once, retrain (no recovery).",
    "dns": "Dynamic Network Surgery (Guo et al. 2016): gradual magnitude pruning with splicing (hysteresis) recovery.",
    "gmp": "Gradual magnitude pruning (Zhu & Gupta 2017): cubic schedule, pruned weights stay pruned.",
    "set": "Sparse Evolutionary Training (Mocanu et al. 2018): sparse from the start, drop weakest, regrow at random.",
    "rigl": "RigL (Evci et al. 2020): sparse from the start, drop weakest, regrow where the gradient is largest.",
    "dpf": "Dynamic Pruning with Feedback (Lin et al. 2020): pruned-model gradient updates the dense weights.",
    "one_shot": "One-shot global magnitude pruning after 10 dense epochs, then fine-tuning.",
}


def load_presets() -> dict[str, dict]:
    """Every preset run config, by name (in a stable order)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(PRESET_DIR.glob("*.json"))}
