"""Logging an earlier epoch again (a fine-tuning phase that restarts its epoch count) replaces that epoch only:
every other stored epoch's masks still decode to what was logged, whether the replays arrive in later batches or
in the same batch as the epochs they replace."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import prunescope
from prunescope.sdk.run import Run
from tests.sdk.conftest import TOKEN, LiveApi
from tests.sdk.test_tracking import wait_for

ORDERS = [[1, 2, 3, 4, 1, 2], [1, 2, 3, 2, 4, 5], [1, 1, 2], [1, 2, 1], [1, 2, 3, 2, 3, 4], [1, 2, 3, 1, 3]]


def churning_training() -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """A pruner whose masks change every step (SET: random regrowth), so consecutive epochs differ."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = prunescope.Pruner(model, optimizer, {"target_sparsity": 0.8, "schedule": {"kind": "constant"},
                                                  "recovery": {"kind": "random", "every_steps": 1}},
                               epochs=20, steps_per_epoch=3)  # churning well past 6 epochs
    return model, optimizer, pruner


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    for _ in range(steps):
        x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def exported(api: LiveApi, run_id: int, epoch: int) -> dict[str, np.ndarray]:
    with api.http() as http:
        response = http.get(f"/api/runs/{run_id}/export", params={"format": "npz", "epoch": epoch})
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as archive:
        return {name: archive[name] for name in archive.files}


def logged_run(api: LiveApi, tmp_path: Path, order: list[int], *, one_batch: bool) -> tuple[int, dict[int, Any]]:
    """Log `order`'s epochs; with `one_batch` they all reach the API in one batch, else one batch each."""
    model, optimizer, pruner = churning_training()
    expected: dict[int, dict[str, np.ndarray]] = {}
    run = Run(name="replayed", api=api.url, token=TOKEN, dir=tmp_path, flush_seconds=600 if one_batch else 0.05)
    with run:
        assert run.id is not None
        run.watch(pruner)
        for seq, epoch in enumerate(order):
            train_steps(model, optimizer)
            run.log(epoch=epoch, seq=seq)
            expected[epoch] = {name: mask.numpy().copy() for name, mask in pruner.masks().items()}
            if not one_batch:  # this record stored before the next one is sent
                wait_for(lambda e=epoch, s=seq: stored_seq(api, run.id, e) == s)
    return run.id, expected


def stored_seq(api: LiveApi, run_id: int | None, epoch: int) -> float | None:
    with api.http() as http:
        items = http.get(f"/api/runs/{run_id}/epochs").json()["items"]
    return next(((e.get("extra") or {}).get("seq") for e in items if e["epoch"] == epoch), None)


@pytest.mark.parametrize("one_batch", [False, True], ids=["batch-per-log", "one-batch"])
@pytest.mark.parametrize("order", ORDERS, ids=["-".join(map(str, o)) for o in ORDERS])
def test_every_epoch_decodes_to_the_masks_last_logged_for_it(api: LiveApi, tmp_path: Path, order: list[int],
                                                             one_batch: bool) -> None:
    run_id, expected = logged_run(api, tmp_path, order, one_batch=one_batch)
    assert all(not np.array_equal(expected[a]["0.weight"], expected[b]["0.weight"])
               for a in expected for b in expected if a < b), "the masks must churn between epochs"
    with api.http() as http:
        assert http.get(f"/api/runs/{run_id}").json()["status"] == "completed"
        assert [e["epoch"] for e in http.get(f"/api/runs/{run_id}/epochs").json()["items"]] == sorted(expected)
    for epoch, masks in expected.items():
        got = exported(api, run_id, epoch)
        assert set(got) == set(masks)
        for name, mask in masks.items():
            differ = int(np.count_nonzero(got[name] != mask))
            assert differ == 0, f"order {order}: epoch {epoch}'s {name} decodes with {differ} bits wrong"
