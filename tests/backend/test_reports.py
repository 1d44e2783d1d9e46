"""Worker reports: claiming runs, recording epochs and masks, finishing, heartbeats, and what is refused."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.tables import Run, utcnow
from prunescope import maskcodec
from tests.backend.conftest import WORKER, digits_config


def submit(client: TestClient, **overrides: Any) -> int:
    run_id: int = client.post("/api/runs", json=digits_config(**overrides)).json()["id"]
    return run_id


def start(client: TestClient, run_id: int, worker: str = "w1") -> dict[str, Any]:
    response = client.post(f"/api/worker/runs/{run_id}/start", json={"worker": worker}, headers=WORKER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def epoch_body(epoch: int, masks: dict[str, Any] | None = None, worker: str = "w1", **extra: Any) -> dict[str, Any]:
    return {"worker": worker, "epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5, "test_loss": 1.1 / epoch,
            "test_acc": min(1.0, 0.5 + 0.1 * epoch), "lr": 0.1, "sparsity": 0.5, "nonzero": 10, "total": 20,
            "epoch_seconds": 1.0, "samples_per_s": 100.0,
            "layers": [{"name": "fc1.weight", "shape": [6, 16], "sparsity": 0.5, "pruned": 3, "regrown": 1,
                        "threshold": 0.01}],
            "masks": masks or {}, **extra}


def report(client: TestClient, run_id: int, body: dict[str, Any]) -> Any:
    return client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=WORKER)


def test_masks_read_back_bit_exact_through_key_frames_and_deltas(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 40})
    start(client, run_id)
    rng = np.random.default_rng(0)
    mask = rng.random((6, 16)) < 0.5
    sent = {}
    previous = None
    for epoch in range(1, 41):
        mask = mask.copy()
        mask.flat[rng.integers(0, mask.size, 5)] ^= True
        keyframe = epoch % maskcodec.KEYFRAME_EVERY == 1
        encoded = maskcodec.encode(mask, None if keyframe else previous)
        assert report(client, run_id, epoch_body(epoch, {"fc1.weight": encoded.to_json()})).status_code == 200
        sent[epoch], previous = mask, mask
    for epoch in (1, 2, 16, 17, 18, 33, 40):
        grid = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": epoch, "max_cells": 10_000}).json()
        assert np.array_equal(np.array(grid["density"]) == 1.0, sent[epoch]), epoch
        assert grid["sparsity"] == pytest.approx(1 - sent[epoch].mean())
    overview = client.get(f"/api/runs/{run_id}/masks").json()["layers"]
    assert overview[0]["name"] == "fc1.weight"
    assert overview[0]["epochs"] == list(range(1, 41))


def test_density_grid_is_bounded_by_max_cells(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    mask = np.zeros((300, 784), dtype=bool)
    mask[:, :392] = True
    body = epoch_body(1, {"big.weight": maskcodec.encode(mask).to_json()})
    assert report(client, run_id, body).status_code == 200
    grid = client.get(f"/api/runs/{run_id}/masks/big.weight", params={"max_cells": 500}).json()
    rows, cols = grid["grid_shape"]
    assert rows * cols <= 500
    assert len(grid["density"]) == rows
    assert grid["density"][0][0] == 1.0
    assert grid["density"][0][-1] == 0.0
    assert client.get(f"/api/runs/{run_id}/masks/nope").status_code == 404
    assert client.get(f"/api/runs/{run_id}/masks/big.weight", params={"epoch": 7}).status_code == 404


def test_input_connectivity_counts_surviving_connections_per_pixel(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    mask = np.zeros((300, 784), dtype=bool)
    mask[:10, 0] = True  # pixel (0, 0) keeps 10 connections
    mask[:, 783] = True  # pixel (27, 27) keeps all 300
    body = epoch_body(1, {"fc1.weight": maskcodec.encode(mask).to_json()})
    body["layers"][0]["shape"] = [300, 784]
    assert report(client, run_id, body).status_code == 200
    conn = client.get(f"/api/runs/{run_id}/connectivity").json()
    assert conn["image_shape"] == [28, 28]
    assert conn["counts"][0][0] == 10
    assert conn["counts"][27][27] == 300
    assert conn["max"] == 300


def test_stability_counts_how_long_bits_stayed(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 5})
    start(client, run_id)
    mask = np.ones((6, 16), dtype=bool)
    previous = None
    for epoch in range(1, 6):
        if epoch == 4:
            mask = mask.copy()
            mask[0, :4] = False
        assert report(client, run_id, epoch_body(epoch, {"fc1.weight": maskcodec.encode(mask, previous).to_json()}))\
            .status_code == 200
        previous = mask
    body = client.get(f"/api/runs/{run_id}/masks/fc1.weight/stability", params={"epoch": 5}).json()
    assert sum(body["kept"]) == 92 and sum(body["pruned"]) == 4
    assert body["never_changed"] == 92


def test_repeated_epoch_replaces_the_earlier_record(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    assert report(client, run_id, epoch_body(1)).status_code == 200
    assert report(client, run_id, epoch_body(1, train_loss=0.25)).status_code == 200
    epochs = client.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == [1]
    assert epochs[0]["train_loss"] == 0.25
    assert epochs[0]["layers"][0]["pruned"] == 3


def test_unauthenticated_or_malformed_reports_change_nothing(client: TestClient) -> None:
    run_id = submit(client)
    assert client.post(f"/api/worker/runs/{run_id}/start", json={"worker": "w1"}).status_code == 401
    wrong = {"Authorization": "Bearer guess"}
    assert client.post(f"/api/worker/runs/{run_id}/start", json={"worker": "w1"}, headers=wrong).status_code == 401
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "queued"
    start(client, run_id)
    assert client.post(f"/api/worker/runs/{run_id}/epochs", json=epoch_body(1)).status_code == 401
    bad_masks = [
        {"fc1.weight": {"shape": [6, 16], "encoding": "key", "data": "!!!not base64"}},
        {"fc1.weight": {"shape": [6, 16], "encoding": "key", "data": "aGVsbG8="}},  # not zlib
        {"fc1.weight": {**maskcodec.encode(np.ones((6, 16), bool)).to_json(), "shape": [7, 16]}},
        {"fc1.weight": maskcodec.encode(np.ones((6, 16), bool), np.ones((6, 16), bool)).to_json()},  # delta, no base
        {"fc1.weight": {"shape": [6, 16], "encoding": "gzip", "data": ""}},
    ]
    for masks in bad_masks:
        assert report(client, run_id, epoch_body(1, masks)).status_code == 422, masks
    nan = json.dumps(epoch_body(1, test_acc=float("nan"))).encode()
    assert client.post(f"/api/worker/runs/{run_id}/epochs", content=nan,
                       headers={**WORKER, "Content-Type": "application/json"}).status_code == 422
    assert report(client, run_id, epoch_body(99)).status_code == 422  # past the run's epochs
    assert report(client, run_id, {"worker": "w1"}).status_code == 422
    assert report(client, run_id, epoch_body(1, worker="impostor")).status_code == 409
    assert client.get(f"/api/runs/{run_id}/epochs").json()["items"] == []
    assert client.get(f"/api/runs/{run_id}").json()["epochs_done"] == 0


def test_finish_records_summary_and_refuses_a_stale_worker(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    report(client, run_id, epoch_body(1))
    stale = client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w2", "status": "completed"},
                        headers=WORKER)
    assert stale.status_code == 409
    summary = {"final_test_acc": 0.9, "best_test_acc": 0.95, "final_sparsity": 0.8}
    done = client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w1", "status": "completed",
                                                                   "summary": summary}, headers=WORKER)
    assert done.status_code == 204
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "completed"
    assert run["summary"] == summary
    assert run["best_test_acc"] == 0.95
    assert run["finished_at"] is not None
    assert start(client, run_id, "w3")["proceed"] is False


def test_cancel_of_a_running_run_reaches_the_worker_in_report_answers(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    assert report(client, run_id, epoch_body(1)).json()["cancel"] is False
    assert client.post(f"/api/runs/{run_id}/cancel").json()["cancel_requested"] is True
    assert report(client, run_id, epoch_body(2)).json()["cancel"] is True
    with client.stream("GET", f"/api/runs/{run_id}/events", params={"after": 0}) as stream:
        statuses = []
        for line in stream.iter_lines():
            if line.startswith("data:") and '"status"' in line:
                statuses.append(json.loads(line[5:]))
            if statuses and statuses[-1].get("cancel_requested"):
                break
    assert statuses[-1]["attempts"] == 1 and statuses[-1]["cancel_requested"] is True
    beat = client.post("/api/worker/heartbeat", json={"worker": "w1", "run_id": run_id}, headers=WORKER).json()
    assert beat["cancel"] is True


def test_a_second_worker_cannot_claim_a_live_run(client: TestClient) -> None:
    run_id = submit(client)
    assert start(client, run_id, "w1")["proceed"] is True
    assert start(client, run_id, "w2")["proceed"] is False


def test_cancelled_queued_run_never_starts(client: TestClient) -> None:
    run_id = submit(client)
    client.post(f"/api/runs/{run_id}/cancel")
    assert start(client, run_id)["proceed"] is False


def test_silent_worker_run_is_requeued_then_fails_after_max_attempts(client: TestClient) -> None:
    app = client.app
    dispatcher = app.state.dispatcher  # type: ignore[attr-defined]
    dispatcher.started_at -= timedelta(hours=1)
    db = app.state.db  # type: ignore[attr-defined]
    run_id = submit(client)
    max_attempts = app.state.settings.max_attempts  # type: ignore[attr-defined]
    for attempt in range(1, max_attempts + 1):
        answer = start(client, run_id, f"w{attempt}")
        assert answer["proceed"] and answer["attempt"] == attempt
        with db.writing() as session:
            session.get(Run, run_id).last_heartbeat_at = utcnow() - timedelta(hours=1)
        dispatcher.reap_silent_runs()
        run = client.get(f"/api/runs/{run_id}").json()
        if attempt < max_attempts:
            assert run["status"] == "queued", run
        else:
            assert run["status"] == "failed"
            assert "heartbeat" in run["error"] and f"{max_attempts} attempts" in run["error"]


def test_worker_shutting_down_hands_the_run_back(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    response = client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w1", "status": "requeue"},
                           headers=WORKER)
    assert response.status_code == 204
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "queued" and run["attempts"] == 0


def test_runs_are_not_reaped_until_workers_had_time_to_reach_a_restarted_api(client: TestClient) -> None:
    db = client.app.state.db  # type: ignore[attr-defined]
    run_id = submit(client)
    start(client, run_id)
    with db.writing() as session:
        session.get(Run, run_id).last_heartbeat_at = utcnow() - timedelta(hours=1)
    client.app.state.dispatcher.reap_silent_runs()  # type: ignore[attr-defined]
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"


def test_heartbeats_list_online_workers(client: TestClient) -> None:
    beat = {"worker": "gpu-host:1", "hostname": "gpu-host", "queues": ["gpu"], "device": "cuda",
            "device_name": "H100", "gpu_memory_mb": 1024.0}
    assert client.post("/api/worker/heartbeat", json=beat, headers=WORKER).status_code == 200
    items = client.get("/api/workers").json()["items"]
    assert items[0]["name"] == "gpu-host:1"
    assert items[0]["device_name"] == "H100"
    assert items[0]["heartbeat_age_seconds"] < 5


def test_artifacts_upload_and_download_stay_in_their_folder(client: TestClient) -> None:
    run_id = submit(client)
    put = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"weights", headers=WORKER)
    assert put.status_code == 204
    got = client.get(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", headers=WORKER)
    assert got.content == b"weights"
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/..%2f..%2fevil.pt", content=b"x",
                      headers=WORKER).status_code in (404, 422)
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/other.pt", content=b"x", headers=WORKER).status_code == 422
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/model.pt", content=b"x").status_code == 401
