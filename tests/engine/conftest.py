"""Shared helpers for engine tests: complete run configs on tiny synthetic data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from prunescope.contract import EpochRecord
from prunescope.contract.config import RunConfig


class Epochs(list[dict[str, Any]]):
    """An `on_epoch` callback that keeps each record as a dict, with its masks under "masks"."""

    def __call__(self, record: EpochRecord, masks: dict[str, np.ndarray]) -> None:
        self.append({**record.model_dump(), "masks": masks})


def run_config(pruning: dict | None = None, **sections: Any) -> dict:
    """A validated run config (all defaults filled) on 256 synthetic samples, 2 epochs."""
    doc: dict[str, Any] = {
        "model": {"name": "lenet300_100"},
        "dataset": {"name": "synthetic", "limit": 256},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.05, "seed": 0},
        "pruning": pruning,
    }
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.model_validate(doc).model_dump(mode="json")


@pytest.fixture
def make_config() -> Callable[..., dict]:
    return run_config


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # The suite runs on shared 2-core machines; one thread keeps timings stable and results exact.
    torch.set_num_threads(1)
