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
from prunescope.contract.worker_api import LEASE_HEADER
from tests.backend.conftest import WORKER, digits_config


def submit(client: TestClient, **overrides: Any) -> int:
    run_id: int = client.post("/api/runs", json=digits_config(**overrides)).json()["id"]
    return run_id


LEASES: dict[int, str] = {}  # the newest lease `start` handed out, per run


def start(client: TestClient, run_id: int, worker: str = "w1") -> dict[str, Any]:
    response = client.post(f"/api/worker/runs/{run_id}/start", json={"worker": worker}, headers=WORKER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    if body["proceed"]:
        LEASES[run_id] = body["lease"]
    return body


def leased(run_id: int, lease: str | None = None) -> dict[str, str]:
    """Worker headers with the run's current lease (or the one given)."""
    return {**WORKER, LEASE_HEADER: lease or LEASES[run_id]}


def epoch_body(epoch: int, masks: dict[str, Any] | None = None, worker: str = "w1", **extra: Any) -> dict[str, Any]:
    return {"worker": worker, "epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5, "test_loss": 1.1 / epoch,
            "test_acc": min(1.0, 0.5 + 0.1 * epoch), "lr": 0.1, "sparsity": 0.5, "nonzero": 10, "total": 20,
            "epoch_seconds": 1.0, "samples_per_s": 100.0,
            "layers": [{"name": "fc1.weight", "shape": [6, 16], "sparsity": 0.5, "pruned": 3, "regrown": 1,
                        "threshold": 0.01}],
            "masks": masks or {}, **extra}


def report(client: TestClient, run_id: int, body: dict[str, Any], lease: str | None = None) -> Any:
    return client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=leased(run_id, lease))


def finish(client: TestClient, run_id: int, status: str, lease: str | None = None, **body: Any) -> Any:
    return client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w1", "status": status, **body},
                       headers=leased(run_id, lease))


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


def test_a_resumed_attempt_drops_what_earlier_attempts_recorded_after_its_epoch(client: TestClient) -> None:
    # Attempt 1 recorded epochs 1-3 (2 and 3 as mask deltas); attempt 2 resumed from epoch 1's checkpoint,
    # re-reported epoch 2 with another mask and ended. Epoch 3's delta then decoded against attempt 2's epoch 2:
    # a mask neither attempt had (200), or a 422 when the kept counts differed.
    run_id = submit(client, training={"epochs": 5})
    start(client, run_id)
    rng = np.random.default_rng(1)
    masks = [rng.random((4, 8)) < 0.5 for _ in range(3)]
    previous = None
    for epoch, mask in enumerate(masks, start=1):
        encoded = maskcodec.encode(mask, previous).to_json()
        assert report(client, run_id, epoch_body(epoch, {"fc1.weight": encoded})).status_code == 200
        previous = mask
    assert finish(client, run_id, "requeue").status_code == 204
    start(client, run_id, "w2")
    other = ~masks[1]
    body = epoch_body(2, {"fc1.weight": maskcodec.encode(other).to_json()}, worker="w2", test_acc=0.5)
    assert report(client, run_id, body).status_code == 200
    epochs = client.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [(e["epoch"], e["attempt"]) for e in epochs] == [(1, 1), (2, 2)]
    # The best accuracy is one the stored epochs hold (attempt 1's dropped epoch 3 had 0.8; now epoch 1's 0.6).
    assert client.get(f"/api/runs/{run_id}").json()["best_test_acc"] == max(e["test_acc"] for e in epochs)
    grid = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": 2, "max_cells": 10_000}).json()
    assert np.array_equal(np.array(grid["density"]) == 1.0, other)
    assert client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": 3}).status_code == 404
    assert client.get(f"/api/runs/{run_id}").json()["epochs_done"] == 2
    # The new attempt's own later epochs are kept as it goes on.
    third = epoch_body(3, {"fc1.weight": maskcodec.encode(masks[2], other).to_json()}, worker="w2")
    assert report(client, run_id, third).status_code == 200
    assert [e["epoch"] for e in client.get(f"/api/runs/{run_id}/epochs").json()["items"]] == [1, 2, 3]


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
                       headers={**leased(run_id), "Content-Type": "application/json"}).status_code == 422
    assert report(client, run_id, epoch_body(99)).status_code == 422  # past the run's epochs
    assert report(client, run_id, {"worker": "w1"}).status_code == 422
    # The worker's name proves nothing: without the lease a report is a 409, with any name.
    assert client.post(f"/api/worker/runs/{run_id}/epochs", json=epoch_body(1), headers=WORKER).status_code == 409
    assert report(client, run_id, epoch_body(1), lease="made-up").status_code == 409
    assert client.get(f"/api/runs/{run_id}/epochs").json()["items"] == []
    assert client.get(f"/api/runs/{run_id}").json()["epochs_done"] == 0


def test_finish_records_summary_and_refuses_a_stale_worker(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    for epoch in (1, 2, 3):
        assert report(client, run_id, epoch_body(epoch)).status_code == 200
    stale = client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w1", "status": "completed"},
                        headers=WORKER)
    assert stale.status_code == 409
    summary = {"final_test_acc": 0.9, "best_test_acc": 0.95, "final_sparsity": 0.8}
    done = finish(client, run_id, "completed", summary=summary)
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
    beat = client.post("/api/worker/heartbeat", json={"worker": "w1", "run_id": run_id}, headers=leased(run_id)).json()
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


def test_worker_shutting_down_hands_the_run_back_and_the_next_claim_resumes(client: TestClient) -> None:
    run_id = submit(client)
    first = start(client, run_id)
    assert report(client, run_id, epoch_body(1)).status_code == 200
    put = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"epoch-1", headers=leased(run_id))
    assert put.status_code == 204
    assert finish(client, run_id, "requeue").status_code == 204
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "queued" and run["attempts"] == 1
    # The hand-back's lease is spent; the next claim resumes from the checkpoint as attempt 2.
    assert report(client, run_id, epoch_body(2), lease=first["lease"]).status_code == 409
    second = start(client, run_id, "w2")
    assert second["proceed"] and second["resume"] is True and second["attempt"] == 2
    assert second["lease"] != first["lease"]
    got = client.get(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", headers=leased(run_id))
    assert got.content == b"epoch-1"


def test_a_cancel_that_meets_a_hand_back_ends_the_run_cancelled(client: TestClient) -> None:
    # Ctrl-C on the worker and Cancel in the dashboard together: the hand-back requeued the run with its cancel
    # still pending, and with no other worker it stayed "queued" for good (its checkpoint kept, its stream open).
    run_id = submit(client)
    start(client, run_id)
    assert report(client, run_id, epoch_body(1)).status_code == 200
    put = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"epoch-1", headers=leased(run_id))
    assert put.status_code == 204
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    assert finish(client, run_id, "requeue").status_code == 204
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "cancelled" and run["finished_at"] is not None
    assert run["epochs_done"] == 1
    assert not start(client, run_id, "w2")["proceed"]
    assert "shut down before it stopped the run" in client.get(f"/api/runs/{run_id}/events").text  # it ends


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
    start(client, run_id)
    put = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"weights", headers=leased(run_id))
    assert put.status_code == 204
    got = client.get(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", headers=leased(run_id))
    assert got.content == b"weights"
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/..%2f..%2fevil.pt", content=b"x",
                      headers=leased(run_id)).status_code in (404, 422)
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/other.pt", content=b"x",
                      headers=leased(run_id)).status_code == 422
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/model.pt", content=b"x").status_code == 401


def test_storage_gone_while_an_upload_streams_in_is_a_503_not_a_500(client: TestClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.reports import endpoints

    run_id = submit(client)
    start(client, run_id)
    artifacts = client.app.state.settings.resolved_artifact_dir  # type: ignore[attr-defined]

    def storage_swapped_out(*args: Any) -> None:
        # The artifact folder is moved away and a file takes its place while the body streams in: renaming the
        # upload into place fails, and so does removing the temporary file, whose folder is now a file.
        artifacts.rename(artifacts.with_name("aside"))
        artifacts.write_text("not a directory")
        raise NotADirectoryError(20, "Not a directory")

    monkeypatch.setattr(endpoints, "_replace_under_lease", storage_swapped_out)
    put = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"weights",
                     headers=leased(run_id))
    assert put.status_code == 503, put.text
    assert put.headers["Retry-After"] == "2"


def test_a_worker_cut_off_mid_upload_stores_nothing_and_is_no_server_error(client: TestClient,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker killed while it uploaded: Starlette raised ClientDisconnect from the body stream, which the endpoint
    # did not catch ("Exception in ASGI application" in the API log, a 500 for the fault suite's log check).
    from starlette.requests import ClientDisconnect, Request

    run_id = submit(client)
    start(client, run_id)
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"epoch-1",
                      headers=leased(run_id)).status_code == 204

    async def cut_off(self: Request) -> Any:
        yield b"partial"
        raise ClientDisconnect()

    monkeypatch.setattr(Request, "stream", cut_off)
    put = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"epoch-2",
                     headers=leased(run_id))
    assert put.status_code == 400 and "cut off" in put.json()["detail"]
    monkeypatch.undo()
    got = client.get(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", headers=leased(run_id))
    assert got.content == b"epoch-1"
    folder = client.app.state.settings.resolved_artifact_dir  # type: ignore[attr-defined]
    assert not list(folder.rglob(".upload-*"))


def reap(client: TestClient, run_id: int) -> None:
    """The run's worker went silent past the heartbeat timeout: the dispatcher requeues the run."""
    app = client.app
    app.state.dispatcher.started_at -= timedelta(hours=1)  # type: ignore[attr-defined]
    with app.state.db.writing() as session:  # type: ignore[attr-defined]
        session.get(Run, run_id).last_heartbeat_at = utcnow() - timedelta(hours=1)
    app.state.dispatcher.reap_silent_runs()  # type: ignore[attr-defined]
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "queued"


def test_a_superseded_lease_writes_nothing_anywhere(client: TestClient) -> None:
    run_id = submit(client)
    stale = start(client, run_id, "w1")["lease"]
    assert report(client, run_id, epoch_body(1)).status_code == 200
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"attempt-1",
                      headers=leased(run_id)).status_code == 204
    reap(client, run_id)
    fresh = start(client, run_id, "w2")["lease"]
    assert fresh != stale
    # Every call of the stale attempt is a 409, and none of them changes anything.
    assert report(client, run_id, epoch_body(2), lease=stale).status_code == 409
    put = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"stale",
                     headers=leased(run_id, stale))
    assert put.status_code == 409
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/model.pt", content=b"stale",
                      headers=leased(run_id, stale)).status_code == 409
    assert client.get(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt",
                      headers=leased(run_id, stale)).status_code == 409
    assert finish(client, run_id, "completed", lease=stale).status_code == 409
    beat = client.post("/api/worker/heartbeat", json={"worker": "w1", "run_id": run_id}, headers=leased(run_id, stale))
    assert beat.status_code == 409
    assert client.get("/api/workers").json()["items"] == []  # the stale beat registered nothing either
    got = client.get(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", headers=leased(run_id, fresh))
    assert got.content == b"attempt-1"
    assert not (client.app.state.settings.resolved_artifact_dir / "runs" / str(run_id)  # type: ignore[attr-defined]
                / "model.pt").exists()
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "running" and run["epochs_done"] == 1 and run["attempts"] == 2
    # A beat without the lease is refused the same way; the worker name alone is nothing.
    assert client.post("/api/worker/heartbeat", json={"worker": "w2", "run_id": run_id},
                       headers=WORKER).status_code == 409


def test_epochs_record_the_attempt_that_trained_them(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id, "w1")
    assert report(client, run_id, epoch_body(1)).status_code == 200
    assert report(client, run_id, epoch_body(2)).status_code == 200
    reap(client, run_id)
    start(client, run_id, "w2")
    assert report(client, run_id, epoch_body(2, train_loss=0.3)).status_code == 200  # re-run after the crash
    assert report(client, run_id, epoch_body(3)).status_code == 200
    epochs = client.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [(e["epoch"], e["attempt"]) for e in epochs] == [(1, 1), (2, 2), (3, 2)]
    exported = client.get(f"/api/runs/{run_id}/export", params={"format": "json"}).json()["epochs"]
    assert [e["attempt"] for e in exported] == [1, 2, 2]
    assert "attempt" in client.get(f"/api/runs/{run_id}/export", params={"format": "csv"}).text.splitlines()[0]


def test_completed_is_refused_until_every_epoch_is_recorded(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    for epoch in (1, 3):
        assert report(client, run_id, epoch_body(epoch)).status_code == 200
    refused = finish(client, run_id, "completed")
    assert refused.status_code == 409 and "1 of epochs 1..3" in refused.text
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"
    # An early stop must say so, and then covers only the epochs it ran.
    assert finish(client, run_id, "completed", summary={"early_stop": "converged", "epochs_done": 3}).status_code == 409
    assert report(client, run_id, epoch_body(2)).status_code == 200
    assert finish(client, run_id, "completed").status_code == 204
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "completed"


def test_a_stated_early_stop_completes_with_the_epochs_it_ran(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 5})
    start(client, run_id)
    for epoch in (1, 2):
        assert report(client, run_id, epoch_body(epoch)).status_code == 200
    assert finish(client, run_id, "completed", summary={"epochs_done": 2}).status_code == 409  # not stated
    done = finish(client, run_id, "completed", summary={"early_stop": "accuracy plateaued", "epochs_done": 2})
    assert done.status_code == 204
    assert client.get(f"/api/runs/{run_id}").json()["summary"]["early_stop"] == "accuracy plateaued"


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_the_checkpoint_goes_when_the_run_ends_and_the_model_stays(client: TestClient, outcome: str) -> None:
    run_id = submit(client, training={"epochs": 1})
    start(client, run_id)
    assert report(client, run_id, epoch_body(1)).status_code == 200
    for name in ("checkpoint.pt", "model.pt"):
        assert client.put(f"/api/worker/runs/{run_id}/artifacts/{name}", content=name.encode(),
                          headers=leased(run_id)).status_code == 204
    folder = client.app.state.settings.resolved_artifact_dir / "runs" / str(run_id)  # type: ignore[attr-defined]
    assert (folder / "checkpoint.pt").exists()
    assert finish(client, run_id, outcome, error="boom" if outcome == "failed" else None).status_code == 204
    assert client.get(f"/api/runs/{run_id}").json()["status"] == outcome
    assert not (folder / "checkpoint.pt").exists()
    assert (folder / "model.pt").read_bytes() == b"model.pt"


def test_a_checkpoint_is_kept_across_a_hand_back_and_dropped_when_the_run_turns_out_cancelled(
        client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"c", headers=leased(run_id))
    assert finish(client, run_id, "requeue").status_code == 204
    folder = client.app.state.settings.resolved_artifact_dir / "runs" / str(run_id)  # type: ignore[attr-defined]
    assert (folder / "checkpoint.pt").exists()  # it can still resume
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    assert start(client, run_id, "w2")["proceed"] is False  # its queued task arrives: nothing left to resume
    assert not (folder / "checkpoint.pt").exists()


def test_hand_backs_do_not_use_up_the_run_s_attempts(client: TestClient) -> None:
    run_id = submit(client)
    max_attempts = client.app.state.settings.max_attempts  # type: ignore[attr-defined]
    for n in range(max_attempts + 1):
        assert start(client, run_id, f"w{n}")["attempt"] == n + 1
        assert finish(client, run_id, "requeue").status_code == 204
    start(client, run_id, "last")
    reap(client, run_id)  # one silent attempt after many clean hand-backs: requeued, not failed


def test_unwritable_artifact_storage_is_a_retryable_503_that_writes_nothing(client: TestClient) -> None:
    run_id = submit(client)
    start(client, run_id)
    root = client.app.state.settings.resolved_artifact_dir  # type: ignore[attr-defined]
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a directory")  # root ignores permissions, but not a file in the way
    response = client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"c", headers=leased(run_id))
    assert response.status_code == 503 and "artifact storage unavailable" in response.text
    root.unlink()
    assert client.put(f"/api/worker/runs/{run_id}/artifacts/checkpoint.pt", content=b"c",
                      headers=leased(run_id)).status_code == 204


def test_a_cancelled_run_shows_its_last_recorded_epoch_not_the_summary_s_figures(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 5, "batch_size": 64})
    start(client, run_id)
    assert report(client, run_id, epoch_body(1, sparsity=0.4, test_acc=0.7)).status_code == 200
    assert report(client, run_id, epoch_body(2, sparsity=0.562, test_acc=0.8)).status_code == 200
    client.post(f"/api/runs/{run_id}/cancel")
    # The engine's summary is taken after its last (partial) step: it may differ from the last epoch's record.
    summary = {"final_sparsity": 0.59, "final_test_acc": 0.75, "best_test_acc": 0.8, "stopped": True}
    assert finish(client, run_id, "cancelled", summary=summary).status_code == 204
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "cancelled"
    assert (run["sparsity"], run["test_acc"]) == (0.562, 0.8)
    assert run["summary"]["final_sparsity"] == 0.59  # the summary itself is kept as the worker sent it
    listed = client.get("/api/runs").json()["items"][0]
    assert (listed["sparsity"], listed["test_acc"]) == (0.562, 0.8)


def test_a_run_cancelled_before_its_first_epoch_lists_no_figures(client: TestClient) -> None:
    # A worker before this fix sent 0.0 accuracies for a run that trained no epoch: "0.00 %", sorted last.
    run_id = submit(client, training={"epochs": 5, "batch_size": 64})
    start(client, run_id)
    client.post(f"/api/runs/{run_id}/cancel")
    summary = {"final_sparsity": 0.0, "final_test_acc": 0.0, "best_test_acc": 0.0, "epochs_done": 0, "stopped": True}
    assert finish(client, run_id, "cancelled", summary=summary).status_code == 204
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "cancelled"
    assert (run["sparsity"], run["test_acc"], run["best_test_acc"]) == (None, None, None)


def _delta_reports(client: TestClient, run_id: int, epochs: range, rng: np.random.Generator,
                   first: np.ndarray) -> dict[int, np.ndarray]:
    """Report `epochs` of one layer as a worker does (a key frame, then deltas); the masks sent, by epoch."""
    sent, previous = {}, None
    mask = first
    for epoch in epochs:
        mask = mask.copy()
        mask.flat[rng.integers(0, mask.size, 5)] ^= True
        encoded = maskcodec.encode(mask, None if previous is None else previous)
        assert report(client, run_id, epoch_body(epoch, {"fc1.weight": encoded.to_json()})).status_code == 200
        sent[epoch] = previous = mask
    return sent


def _mask(client: TestClient, run_id: int, epoch: int) -> np.ndarray:
    grid = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": epoch, "max_cells": 10_000}).json()
    return np.array(grid["density"]) == 1.0


@pytest.mark.parametrize("max_seeks", [500, 0])  # the stored bytes found by (run, layer, epoch), or by (run, epoch)
def test_a_report_s_delta_decodes_against_the_mask_the_last_report_decoded(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, max_seeks: int) -> None:
    from backend.maskviews import ingest
    from backend.maskviews.cache import reported_for

    monkeypatch.setattr(ingest, "MAX_SEEKS", max_seeks)
    run_id = submit(client, training={"epochs": 12})
    start(client, run_id)
    rng = np.random.default_rng(1)
    sent = _delta_reports(client, run_id, range(1, 3), rng, rng.random((6, 16)) < 0.5)

    def no_replay(*args: Any) -> Any:
        raise AssertionError("the previous report's mask should have been found again")

    with monkeypatch.context() as patched:
        patched.setattr(ingest, "mask_at", no_replay)
        sent.update(_delta_reports(client, run_id, range(3, 9), rng, sent[2]))
    for epoch in (1, 2, 5, 8):
        assert np.array_equal(_mask(client, run_id, epoch), sent[epoch]), epoch
    # One kept mask per layer of the run, the newest, not one per epoch.
    with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        kept = {key: identity[0] for key, (identity, _) in reported_for(session)._items.items() if key[0] == run_id}
    assert kept == {(run_id, LEASES[run_id], "fc1.weight"): 8}
    assert report(client, run_id, epoch_body(9)).status_code == 200  # an epoch without masks
    for epoch in range(10, 13):
        assert report(client, run_id, epoch_body(epoch)).status_code == 200
    assert finish(client, run_id, "completed").status_code == 204
    with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        assert not [key for key in reported_for(session)._items if key[0] == run_id]  # the lease ended: gone


def test_a_replaced_epoch_s_delta_decodes_against_the_stored_mask_not_the_remembered_one(
        client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 12})
    start(client, run_id)
    rng = np.random.default_rng(2)
    sent = _delta_reports(client, run_id, range(1, 4), rng, rng.random((6, 16)) < 0.5)
    # Epoch 3 again with another mask (a replayed epoch replaces itself), then epoch 4 as a delta against it.
    other = sent[2].copy()
    other.flat[:7] ^= True
    assert report(client, run_id, epoch_body(3, {"fc1.weight": maskcodec.encode(other, sent[2]).to_json()})
                  ).status_code == 200
    fourth = other.copy()
    fourth.flat[-4:] ^= True
    assert report(client, run_id, epoch_body(4, {"fc1.weight": maskcodec.encode(fourth, other).to_json()})
                  ).status_code == 200
    assert np.array_equal(_mask(client, run_id, 3), other)
    assert np.array_equal(_mask(client, run_id, 4), fourth)


def test_a_new_lease_never_decodes_against_the_old_lease_s_masks(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 12})
    start(client, run_id)
    rng = np.random.default_rng(3)
    sent = _delta_reports(client, run_id, range(1, 4), rng, rng.random((6, 16)) < 0.5)
    old = LEASES[run_id]
    assert finish(client, run_id, "requeue").status_code == 204
    assert start(client, run_id)["proceed"] and LEASES[run_id] != old
    # The resumed attempt re-reports epoch 3 with another mask, as a delta against the stored epoch 2.
    other = sent[2].copy()
    other.flat[:9] ^= True
    assert report(client, run_id, epoch_body(3, {"fc1.weight": maskcodec.encode(other, sent[2]).to_json()})
                  ).status_code == 200
    fourth = other.copy()
    fourth.flat[10:14] ^= True
    assert report(client, run_id, epoch_body(4, {"fc1.weight": maskcodec.encode(fourth, other).to_json()})
                  ).status_code == 200
    assert np.array_equal(_mask(client, run_id, 4), fourth)


def test_reported_masks_keep_one_count_per_layer_within_their_bound() -> None:
    from backend.maskviews.cache import ReportedMasks

    kept = ReportedMasks(max_items=2)
    kept.put(1, "lease", "a", (1, 10, 7), maskcodec.Kept((10, 10), 100))
    kept.put(1, "lease", "a", (2, 10, 8), maskcodec.Kept((10, 10), 0))  # the layer's next epoch replaces its last
    assert len(kept) == 1
    assert kept.get(1, "lease", "a", (1, 10, 7)) is None  # another epoch's, or other bytes': not this count
    assert kept.get(1, "other lease", "a", (2, 10, 8)) is None
    assert kept.get(1, "lease", "a", (2, 10, 8)) == maskcodec.Kept((10, 10), 0)
    kept.put(2, "lease", "a", (1, 10, 7), maskcodec.Kept((10, 10), 100))
    kept.put(3, "lease", "a", (1, 10, 7), maskcodec.Kept((10, 10), 100))  # past 2 entries: the least recent goes
    assert len(kept) == 2 and kept.get(1, "lease", "a", (2, 10, 8)) is None
    kept.forget(2)
    assert len(kept) == 1 and kept.get(3, "lease", "a", (1, 10, 7)) is not None



@pytest.mark.parametrize("bad", ["", "x" * 201, "fc\x00weight"])
def test_a_bad_layer_name_beside_a_delta_is_a_422_on_both_databases(client: TestClient, bad: str) -> None:
    # The delta's previous bytes are looked up by the report's layer names: a name the API refuses must be refused
    # before it reaches a query (PostgreSQL cannot take a NUL in a text parameter: that was a 500). The contract
    # refuses it (`LayerName`, a key of `masks`), so the 422 names the field and nothing is written.
    run_id = submit(client, training={"epochs": 4})
    start(client, run_id)
    rng = np.random.default_rng(4)
    first = rng.random((6, 16)) < 0.5
    assert report(client, run_id, epoch_body(1, {"fc1.weight": maskcodec.encode(first).to_json()})).status_code == 200
    second = first.copy()
    second.flat[:3] ^= True
    masks = {"fc1.weight": maskcodec.encode(second, first).to_json(), bad: maskcodec.encode(second).to_json()}
    answer = report(client, run_id, epoch_body(2, masks))
    assert answer.status_code == 422, answer.text
    assert ["body", "masks", bad, "[key]"] in [problem["loc"] for problem in answer.json()["detail"]]
    assert [e["epoch"] for e in client.get(f"/api/runs/{run_id}/epochs").json()["items"]] == [1]


@pytest.mark.parametrize("bad", ["", "x" * 201, "fc\x00weight"])
def test_a_bad_mask_layer_name_in_a_tracked_batch_is_a_422_that_writes_nothing(client: TestClient, bad: str) -> None:
    created = client.post("/api/tracked-runs", json={"name": "own-loop", "config": {"epochs": 2}}).json()
    mask = maskcodec.encode(np.ones((2, 3), dtype=bool)).to_json()
    epochs = [{"epoch": 1, "masks": {"fc1.weight": mask}}, {"epoch": 2, "masks": {bad: mask}}]
    answer = client.post(f"/api/tracked-runs/{created['id']}/batch", json={"epochs": epochs},
                         headers={"X-Prunescope-Lease": created["lease"]})
    assert answer.status_code == 422, answer.text
    assert ["body", "epochs", 1, "masks", bad, "[key]"] in [problem["loc"] for problem in answer.json()["detail"]]
    assert client.get(f"/api/runs/{created['id']}/epochs").json()["items"] == []


def batch(client: TestClient, run_id: int, bodies: list[dict[str, Any]], lease: str | None = None) -> Any:
    return client.post(f"/api/worker/runs/{run_id}/epochs/batch", json={"epochs": bodies},
                       headers=leased(run_id, lease))


def chained_masks(epochs: int, seed: int = 7) -> list[np.ndarray]:
    """A layer's masks over `epochs` epochs, a few weights flipping each epoch."""
    rng = np.random.default_rng(seed)
    masks = [rng.random((6, 16)) < 0.5]
    for _ in range(epochs - 1):
        nxt = masks[-1].copy()
        nxt.flat[rng.choice(nxt.size, 3, replace=False)] ^= True
        masks.append(nxt)
    return masks


def chained_bodies(masks: list[np.ndarray], epochs: int | None = None) -> list[dict[str, Any]]:
    """Reports of epochs 1..epochs: a key frame, then each a delta against the epoch before it."""
    return [epoch_body(e, {"fc1.weight": maskcodec.encode(masks[e - 1], masks[e - 2] if e > 1 else None).to_json()})
            for e in range(1, (epochs or len(masks)) + 1)]


def epoch_events(client: TestClient, run_id: int) -> list[int]:
    from sqlalchemy import select

    from backend.tables import RunEvent

    with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        return [data["epoch"] for data in session.scalars(
            select(RunEvent.data).where(RunEvent.run_id == run_id, RunEvent.kind == "epoch").order_by(RunEvent.id))]


def test_a_batch_records_every_epoch_with_chained_deltas_in_one_request(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 6})
    start(client, run_id)
    masks = chained_masks(6)
    bodies = chained_bodies(masks, 4)  # a key frame, then deltas each against the epoch before it in this batch
    answer = batch(client, run_id, bodies[::-1])  # any order: stored in epoch order
    assert answer.status_code == 200, answer.text
    assert answer.json()["cancel"] is False
    assert [e["epoch"] for e in client.get(f"/api/runs/{run_id}/epochs").json()["items"]] == [1, 2, 3, 4]
    assert epoch_events(client, run_id) == [1, 2, 3, 4]  # live streams get every epoch
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["epochs_done"] == 4 and run["test_acc"] == pytest.approx(0.9)  # the newest epoch's
    for epoch in (1, 4):
        grid = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": epoch}).json()
        assert np.array_equal(np.array(grid["density"]) == 1.0, masks[epoch - 1])
    # A plain report after the batch: its delta is checked against the batch's last epoch.
    fifth = epoch_body(5, {"fc1.weight": maskcodec.encode(masks[4], masks[3]).to_json()})
    assert report(client, run_id, fifth).status_code == 200
    grid = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": 5}).json()
    assert np.array_equal(np.array(grid["density"]) == 1.0, masks[4])


def test_a_batch_replaces_a_stored_epoch_and_refuses_one_it_holds_twice(client: TestClient) -> None:
    # The last copy of a repeated epoch won silently; a copy's mask delta may be encoded against the other copy.
    run_id = submit(client, training={"epochs": 4})
    start(client, run_id)
    assert report(client, run_id, epoch_body(1, train_loss=9.0)).status_code == 200
    twice = batch(client, run_id, [epoch_body(1, train_loss=0.5), epoch_body(2, train_loss=0.7),
                                   epoch_body(2, train_loss=0.25)])
    assert twice.status_code == 422 and "epoch 2 appears more than once in one request" in twice.text
    answer = batch(client, run_id, [epoch_body(1, train_loss=0.5), epoch_body(2, train_loss=0.25)])
    assert answer.status_code == 200, answer.text
    items = client.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [(e["epoch"], e["train_loss"]) for e in items] == [(1, 0.5), (2, 0.25)]


@pytest.mark.parametrize("fault", ["past the end", "bad delta", "stale lease"])
def test_a_batch_is_recorded_all_or_none(client: TestClient, fault: str) -> None:
    run_id = submit(client, training={"epochs": 3})
    first_lease = start(client, run_id)["lease"]
    masks = chained_masks(3)
    bodies = chained_bodies(masks, 3)
    expected = 422
    if fault == "past the end":
        bodies.append(epoch_body(4))
    elif fault == "bad delta":
        bodies[2]["masks"]["fc1.weight"] = maskcodec.encode(masks[2], ~masks[1]).to_json()  # against another base
    else:
        with client.app.state.db.writing() as session:  # type: ignore[attr-defined]
            session.get(Run, run_id).lease = "another attempt's"
        expected = 409
    answer = batch(client, run_id, bodies, lease=first_lease)
    assert answer.status_code == expected, answer.text
    if fault == "past the end":
        assert "epoch 4 is past the run's 3 epochs" in answer.text
    elif fault == "bad delta":
        assert "epoch 3, mask 'fc1.weight'" in answer.text, answer.text
    assert client.get(f"/api/runs/{run_id}/epochs").json()["items"] == []
    assert epoch_events(client, run_id) == []
    assert client.get(f"/api/runs/{run_id}").json()["epochs_done"] == 0


def test_a_batch_needs_one_to_max_reports_and_answers_a_cancel(client: TestClient) -> None:
    from prunescope.contract.worker_api import MAX_REPORT_BATCH

    run_id = submit(client, training={"epochs": 3})
    start(client, run_id)
    assert batch(client, run_id, []).status_code == 422
    too_many = batch(client, run_id, [epoch_body(1)] * (MAX_REPORT_BATCH + 1))
    assert too_many.status_code == 422 and "epochs" in too_many.text
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    answer = batch(client, run_id, [epoch_body(1), epoch_body(2)])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cancel": True, "reason": "cancel requested"}


def test_a_finish_records_its_last_reports_then_completes_in_one_request(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 4})
    start(client, run_id)
    masks = chained_masks(4)
    bodies = chained_bodies(masks, 4)
    assert report(client, run_id, bodies[0]).status_code == 200
    done = finish(client, run_id, "completed", epochs=bodies[1:], summary={
        "final_test_acc": 0.9, "best_test_acc": 0.9, "final_sparsity": 0.5, "nonzero": 10, "total": 20,
        "epochs_done": 4})
    assert done.status_code == 204, done.text  # "completed" needs epochs 1-4: the finish's own count
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "completed" and run["epochs_done"] == 4
    assert [e["epoch"] for e in client.get(f"/api/runs/{run_id}/epochs").json()["items"]] == [1, 2, 3, 4]
    assert epoch_events(client, run_id) == [1, 2, 3, 4]
    grid = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": 4}).json()  # the delta chain
    assert np.array_equal(np.array(grid["density"]) == 1.0, masks[3])


@pytest.mark.parametrize("fault", ["past the end", "bad delta", "stale lease", "none", "too many"])
def test_a_finish_with_reports_is_recorded_all_or_none(client: TestClient, fault: str) -> None:
    from prunescope.contract.worker_api import MAX_REPORT_BATCH

    run_id = submit(client, training={"epochs": 3})
    first_lease = start(client, run_id)["lease"]
    masks = chained_masks(3)
    bodies = chained_bodies(masks, 3)
    expected, needle = 422, ""
    if fault == "past the end":
        bodies, needle = [*bodies, epoch_body(4)], "epoch 4 is past the run's 3 epochs"
    elif fault == "bad delta":
        bodies[2]["masks"]["fc1.weight"] = maskcodec.encode(masks[2], ~masks[1]).to_json()
        needle = "epoch 3, mask 'fc1.weight'"
    elif fault == "stale lease":
        with client.app.state.db.writing() as session:  # type: ignore[attr-defined]
            session.get(Run, run_id).lease = "another attempt's"
        expected = 409
    elif fault == "none":
        bodies = []  # an empty list is refused: leave the field out
    else:
        bodies = [epoch_body(1)] * (MAX_REPORT_BATCH + 1)
    answer = finish(client, run_id, "completed", lease=first_lease, epochs=bodies)
    assert answer.status_code == expected, answer.text
    assert needle in answer.text
    assert client.get(f"/api/runs/{run_id}/epochs").json()["items"] == []
    assert epoch_events(client, run_id) == []
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "running" and run["epochs_done"] == 0  # the attempt has not ended
