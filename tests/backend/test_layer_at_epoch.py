"""GET /api/runs/{id}/layers/{layer}?epoch=: one layer's stats and weight histogram at one epoch."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.backend.conftest import claim, digits_config

HISTOGRAM = {"edges": [0.001, 0.01, 0.1, 1.0], "counts": [5, 40, 15], "kept": [0, 30, 15]}


def report(client: TestClient, run_id: int, headers: dict[str, str], epoch: int, histogram: Any) -> None:
    layers = [{"name": "fc1.weight", "shape": [6, 10], "sparsity": 0.25, "pruned": 15, "regrown": 0,
               "threshold": 0.01 * epoch, "histogram": histogram},
              {"name": "fc2.weight", "shape": [2, 6], "sparsity": 0.0}]
    response = client.post(f"/api/worker/runs/{run_id}/epochs", headers=headers, json={
        "epoch": epoch, "worker": "w", "train_loss": 1.0, "sparsity": 0.2, "layers": layers})
    assert response.status_code == 200, response.text


def test_one_layer_at_one_epoch_carries_its_histogram(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    headers = claim(client, run_id)
    report(client, run_id, headers, 1, None)
    report(client, run_id, headers, 2, HISTOGRAM)
    at_two = client.get(f"/api/runs/{run_id}/layers/fc1.weight", params={"epoch": 2}).json()
    assert at_two["epoch"] == 2 and at_two["threshold"] == 0.02
    assert at_two["histogram"] == HISTOGRAM
    assert client.get(f"/api/runs/{run_id}/layers/fc1.weight").json()["epoch"] == 2  # newest by default
    at_one = client.get(f"/api/runs/{run_id}/layers/fc1.weight", params={"epoch": 1}).json()
    assert at_one["histogram"] is None and at_one["sparsity"] == 0.25
    assert client.get(f"/api/runs/{run_id}/layers/fc2.weight", params={"epoch": 2}).json()["histogram"] is None


def test_unknown_layer_epoch_or_run_is_a_404_and_bad_input_a_422(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    assert client.get(f"/api/runs/{run_id}/layers/fc1.weight").status_code == 404  # no epochs yet
    report(client, run_id, claim(client, run_id), 1, HISTOGRAM)
    assert client.get(f"/api/runs/{run_id}/layers/conv9.weight", params={"epoch": 1}).status_code == 404
    missing = client.get(f"/api/runs/{run_id}/layers/fc1.weight", params={"epoch": 7})
    assert missing.status_code == 404 and "epoch 7" in missing.json()["detail"]
    assert client.get("/api/runs/999999/layers/fc1.weight").status_code == 404
    for bad in ("0", "-1", "x", str(2**40)):
        assert client.get(f"/api/runs/{run_id}/layers/fc1.weight", params={"epoch": bad}).status_code == 422
    assert client.get(f"/api/runs/{run_id}/layers/{'x' * 201}").status_code == 422
