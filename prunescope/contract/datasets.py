"""What the contract knows of the built-in datasets: their training-set sizes, so optimizer steps per epoch.

The engine loads these sizes (`worker.engine.datasets`; a test holds the two together); `/api/options` serves them
as `train_samples`, so the form's step advice and the API's checks count steps as a worker will.
"""

from __future__ import annotations

import math

# digits: scikit-learn's 1797 images with a fixed fifth held out for test; synthetic: its fixed 1024.
TRAIN_SAMPLES: dict[str, int] = {"digits": 1438, "mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000,
                                 "cifar100": 50000, "synthetic": 1024}


def steps_per_epoch(dataset: str, limit: int | None, batch_size: int) -> int | None:
    """Optimizer steps an epoch (the last partial batch is kept), or None for a dataset of unknown size."""
    size = TRAIN_SAMPLES.get(dataset)
    if size is None:
        return None
    return math.ceil((min(limit, size) if limit else size) / batch_size)
