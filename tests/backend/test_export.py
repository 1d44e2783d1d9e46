"""Exports: CSV and JSON that pandas loads as they are, the masks as .npz."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from prunescope import maskcodec
from tests.backend.conftest import claim, digits_config


def recorded_run(client: TestClient, epochs: int = 3) -> tuple[int, dict[int, dict[str, np.ndarray]]]:
    """A completed run with two layers' stats and masks per epoch, reported as a worker would."""
    run_id = client.post("/api/runs", json=digits_config(name="exported", training={"epochs": epochs})).json()["id"]
    leased = claim(client, run_id)
    rng = np.random.default_rng(0)
    sent: dict[int, dict[str, np.ndarray]] = {}
    for epoch in range(1, epochs + 1):
        masks = {"fc1.weight": rng.random((6, 16)) < 0.5, "fc2.weight": rng.random((3, 6)) < 0.3}
        sent[epoch] = masks
        body: dict[str, Any] = {
            "worker": "w", "epoch": epoch, "train_loss": 1.0 / epoch, "test_acc": 0.8 + 0.01 * epoch, "lr": 0.1,
            "sparsity": 0.5, "nonzero": 50, "total": 114,
            "layers": [{"name": name, "shape": list(mask.shape), "sparsity": float(1 - mask.mean()),
                        "pruned": epoch, "regrown": 0, "threshold": None if name == "fc2.weight" else 0.01}
                       for name, mask in masks.items()],
            "masks": {name: maskcodec.encode(mask).to_json() for name, mask in masks.items()},
        }
        assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=leased).status_code == 200
    client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w", "status": "completed"}, headers=leased)
    return run_id, sent


def test_csv_export_is_one_row_per_epoch_and_layer_and_loads_in_pandas(client: TestClient) -> None:
    run_id, _ = recorded_run(client)
    response = client.get(f"/api/runs/{run_id}/export", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f"prunescope-run-{run_id}.csv" in response.headers["content-disposition"]
    frame = pd.read_csv(io.StringIO(response.text))
    assert len(frame) == 3 * 2
    assert list(frame.columns[:3]) == ["run_id", "epoch", "train_loss"]
    assert frame["epoch"].tolist() == [1, 1, 2, 2, 3, 3]
    assert frame["layer"].tolist() == ["fc1.weight", "fc2.weight"] * 3
    assert frame["layer_shape"].tolist()[:2] == ["6x16", "3x6"]
    assert frame["test_acc"].round(4).tolist() == [0.81, 0.81, 0.82, 0.82, 0.83, 0.83]
    assert frame["layer_pruned"].dtype.kind == "i"
    assert frame["layer_threshold"].isna().tolist() == [False, True] * 3
    assert frame["lr"].dtype.kind == "f"


def test_csv_of_a_run_without_layer_stats_has_one_row_per_epoch(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    leased = claim(client, run_id)
    client.post(f"/api/worker/runs/{run_id}/epochs", json={"worker": "w", "epoch": 1, "test_acc": 0.5},
                headers=leased)
    frame = pd.read_csv(io.StringIO(client.get(f"/api/runs/{run_id}/export?format=csv").text))
    assert len(frame) == 1
    assert frame["layer"].isna().all()
    empty = client.post("/api/runs", json=digits_config()).json()["id"]
    assert pd.read_csv(io.StringIO(client.get(f"/api/runs/{empty}/export?format=csv").text)).empty


def test_json_export_holds_the_run_and_every_epoch(client: TestClient) -> None:
    run_id, _ = recorded_run(client)
    response = client.get(f"/api/runs/{run_id}/export", params={"format": "json"})
    assert response.status_code == 200
    doc = json.loads(response.text)
    assert doc["run"]["id"] == run_id and doc["run"]["status"] == "completed"
    assert doc["run"]["config"]["name"] == "exported"
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2, 3]
    frame = pd.DataFrame(doc["epochs"])
    assert frame["test_acc"].round(2).tolist() == [0.81, 0.82, 0.83]
    layers = pd.json_normalize(doc["epochs"], "layers", ["epoch"], record_prefix="layer.")
    assert len(layers) == 6
    assert set(layers.columns) >= {"epoch", "layer.name", "layer.sparsity", "layer.pruned"}
    epochs_only = pd.read_json(io.StringIO(json.dumps(doc["epochs"])))
    assert len(epochs_only) == 3


def test_npz_export_holds_every_layers_mask_at_the_epoch(client: TestClient) -> None:
    run_id, sent = recorded_run(client)
    newest = client.get(f"/api/runs/{run_id}/export", params={"format": "npz"})
    assert newest.status_code == 200
    assert "epoch3" in newest.headers["content-disposition"]
    with np.load(io.BytesIO(newest.content)) as archive:
        assert sorted(archive.files) == ["fc1.weight", "fc2.weight"]
        for name, mask in sent[3].items():
            assert archive[name].dtype == bool
            assert np.array_equal(archive[name], mask)
    first = client.get(f"/api/runs/{run_id}/export", params={"format": "npz", "epoch": 1})
    with np.load(io.BytesIO(first.content)) as archive:
        assert np.array_equal(archive["fc1.weight"], sent[1]["fc1.weight"])
    assert client.get(f"/api/runs/{run_id}/export", params={"format": "npz", "epoch": 9}).status_code == 404


def test_export_errors_are_clear_4xx(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    no_masks = client.get(f"/api/runs/{run_id}/export", params={"format": "npz"})
    assert no_masks.status_code == 404 and "no mask snapshots" in no_masks.json()["detail"]
    assert client.get(f"/api/runs/{run_id}/export", params={"format": "xlsx"}).status_code == 422
    assert client.get(f"/api/runs/{run_id}/export", params={"format": "npz", "epoch": 0}).status_code == 422
    assert client.get("/api/runs/999/export").status_code == 404
