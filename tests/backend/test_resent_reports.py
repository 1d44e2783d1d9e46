"""A worker's report sent again with other masks replaces its own epoch only: the epochs after it keep theirs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from prunescope import maskcodec
from tests.backend.conftest import claim, digits_config

SHAPE = (32, 64)


def report(epoch: int, mask: np.ndarray, previous: np.ndarray | None = None) -> dict[str, Any]:
    return {"worker": "w", "epoch": epoch, "test_acc": 0.5, "sparsity": float(1 - mask.mean()),
            "layers": [{"name": "fc1.weight", "shape": list(SHAPE), "sparsity": float(1 - mask.mean())}],
            "masks": {"fc1.weight": maskcodec.encode(mask, previous).to_json()}}


def mask_at(client: TestClient, run_id: int, epoch: int) -> np.ndarray:
    answer = client.get(f"/api/runs/{run_id}/export", params={"format": "npz", "epoch": epoch})
    assert answer.status_code == 200, answer.text
    with np.load(io.BytesIO(answer.content)) as archive:
        return np.asarray(archive["fc1.weight"])


@pytest.mark.parametrize("resend", ["alone", "in-a-batch-with-epoch-3", "in-the-finish"])
def test_a_resent_epoch_leaves_the_next_epochs_mask_as_reported(client: TestClient, resend: str) -> None:
    # Epoch 2's stored delta decoded against the new epoch 1: 945 kept weights instead of the 1775 reported,
    # in every mask view and export, with every request answered 200.
    rng = np.random.default_rng(3)
    m1 = rng.random(SHAPE) < 0.9
    m2 = m1 & (rng.random(SHAPE) < 0.97)
    m1_again = rng.random(SHAPE) < 0.5
    run_id = client.post("/api/runs", json=digits_config(training={"epochs": 3})).json()["id"]
    leased = claim(client, run_id)
    for body in (report(1, m1), report(2, m2, m1)):
        assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=leased).status_code == 200
    if resend == "alone":
        answer = client.post(f"/api/worker/runs/{run_id}/epochs", json=report(1, m1_again), headers=leased)
    elif resend == "in-a-batch-with-epoch-3":
        answer = client.post(f"/api/worker/runs/{run_id}/epochs/batch", headers=leased,
                             json={"epochs": [report(1, m1_again), report(3, m2, m2)]})
    else:
        answer = client.post(f"/api/worker/runs/{run_id}/finish", headers=leased,
                             json={"worker": "w", "status": "failed", "error": "x", "epochs": [report(1, m1_again)]})
    assert answer.status_code in (200, 204), answer.text
    assert np.array_equal(mask_at(client, run_id, 1), m1_again)
    assert np.array_equal(mask_at(client, run_id, 2), m2)
    if resend == "in-a-batch-with-epoch-3":
        assert np.array_equal(mask_at(client, run_id, 3), m2)


def test_an_epoch_twice_in_one_request_is_refused(client: TestClient) -> None:
    # The last copy won silently.
    rng = np.random.default_rng(4)
    mask = rng.random(SHAPE) < 0.5
    run_id = client.post("/api/runs", json=digits_config(training={"epochs": 3})).json()["id"]
    leased = claim(client, run_id)
    answer = client.post(f"/api/worker/runs/{run_id}/epochs/batch", headers=leased,
                         json={"epochs": [report(1, mask), report(1, ~mask)]})
    assert answer.status_code == 422
    assert "epoch 1 appears more than once" in answer.text
    finish = client.post(f"/api/worker/runs/{run_id}/finish", headers=leased,
                         json={"worker": "w", "status": "failed", "error": "x",
                               "epochs": [report(2, mask), report(2, mask)]})
    assert finish.status_code == 422
    assert client.get(f"/api/runs/{run_id}/epochs").json()["items"] == []


def test_npz_export_holds_the_layers_masked_at_the_epoch(client: TestClient) -> None:
    # An epoch whose report left a layer's mask out made the whole archive a 404 ("no mask of layer 'fc1.weight'").
    rng = np.random.default_rng(5)
    fc1, fc2 = rng.random(SHAPE) < 0.5, rng.random((3, 32)) < 0.5
    run_id = client.post("/api/runs", json=digits_config(training={"epochs": 3})).json()["id"]
    leased = claim(client, run_id)
    first = report(1, fc1)
    first["masks"]["fc2.weight"] = maskcodec.encode(fc2).to_json()
    second = report(2, fc1)
    second["masks"] = {"fc2.weight": maskcodec.encode(~fc2, fc2).to_json()}
    for body in (first, second):
        assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=leased).status_code == 200
    for epoch, expected in ((1, {"fc1.weight": fc1, "fc2.weight": fc2}), (2, {"fc2.weight": ~fc2})):
        answer = client.get(f"/api/runs/{run_id}/export", params={"format": "npz", "epoch": epoch})
        assert answer.status_code == 200, answer.text
        with np.load(io.BytesIO(answer.content)) as archive:
            assert sorted(archive.files) == sorted(expected)
            for name, mask in expected.items():
                assert np.array_equal(archive[name], mask)
    assert client.get(f"/api/runs/{run_id}/export", params={"format": "npz", "epoch": 3}).status_code == 404
