"""A finished run's history answers are kept when it ends, so its first read is one row."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.db import Database
from backend.events import record_event
from backend.runs import repository, service
from backend.tables import RunHistory
from tests.backend.conftest import claim, digits_config


def layer(name: str, k: int, epoch: int) -> dict[str, Any]:
    return {"name": name, "shape": [30, 40], "sparsity": round(0.9 * epoch / 400, 6), "pruned": (7 * epoch + k) % 50,
            "regrown": (3 * epoch + k) % 40, "threshold": None if epoch % 5 == 0 else 0.001 * epoch,
            "histogram": None}


def epochs(count: int, layers: int = 5) -> list[dict[str, Any]]:
    return [{"epoch": e, "train_loss": 1 / e, "test_acc": min(1.0, 0.5 + e / 1000), "sparsity": 0.5,
             "layers": [layer(f"block{k}.weight", k, e) for k in range(layers)]} for e in range(1, count + 1)]


def tracked_run(client: TestClient, count: int) -> tuple[int, dict[str, str]]:
    created = client.post("/api/tracked-runs", json={"name": "big", "config": {"epochs": count}}).json()
    lease = {"X-Prunescope-Lease": created["lease"]}
    history = epochs(count)
    for start in range(0, count, 200):
        sent = client.post(f"/api/tracked-runs/{created['id']}/batch", json={"epochs": history[start:start + 200]},
                           headers=lease)
        assert sent.status_code == 200, sent.text
    return created["id"], lease


def read(client: TestClient, run_id: int, layout: str, encoding: str = "gzip") -> Any:
    answer = client.get(f"/api/runs/{run_id}/epochs", params={"layout": layout},
                        headers={"Accept-Encoding": encoding})
    assert answer.status_code == 200, answer.text
    return answer.json()


def kept(db: Database, run_id: int) -> dict[str, RunHistory]:
    with db.session() as session:
        return {row.layout: row for row in session.scalars(select(RunHistory).where(RunHistory.run_id == run_id))}


def test_a_large_finished_run_is_first_read_from_the_answer_kept_when_it_ended(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    run_id, lease = tracked_run(client, 400)
    built = {layout: read(client, run_id, layout) for layout in ("records", "columns")}
    assert kept(db, run_id) == {}  # a live run keeps nothing: its epochs still change
    finished = client.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "completed"}, headers=lease)
    assert finished.status_code == 204, finished.text
    rows = kept(db, run_id)
    assert set(rows) == {"records", "columns"}
    assert all(len(row.body) >= 1000 and row.body[:2] == b"\x1f\x8b" for row in rows.values())  # gzipped
    builds: list[str] = []
    monkeypatch.setitem(service.HISTORY_BUILDERS, "records", lambda *a: builds.append("records") or b"")
    again = client.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "completed"}, headers=lease)
    assert again.status_code == 204 and builds == []  # the same end again: the kept answers stand, no rebuild
    monkeypatch.undo()

    # The first read after the end (a restart empties the memory cache too) never decodes an epoch again.
    service.HISTORIES.entries.clear()

    def no_epochs(*args: Any) -> Any:
        raise AssertionError("the kept answer should have been served")

    monkeypatch.setattr(repository, "list_epoch_texts", no_epochs)
    for layout in ("records", "columns"):
        assert read(client, run_id, layout) == built[layout]
        service.HISTORIES.entries.clear()
        assert read(client, run_id, layout, encoding="identity") == built[layout]


def test_a_kept_answer_serves_only_while_the_runs_epochs_are_unchanged(client: TestClient) -> None:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    run_id, lease = tracked_run(client, 400)
    client.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "completed"}, headers=lease)
    fingerprint = kept(db, run_id)["columns"].fingerprint
    with db.writing() as session:  # a marker body at the same fingerprint: served, so the row is what is read
        repository.keep_histories(session, run_id, fingerprint,
                                  {"columns": gzip.compress(orjson.dumps({"marker": True}))})
    service.HISTORIES.entries.clear()
    assert read(client, run_id, "columns") == {"marker": True}
    with db.writing() as session:  # any change to the run's epochs records an event: the fingerprint moves on
        record_event(session, run_id, "epoch", {"epoch": 400})
    answer = read(client, run_id, "columns")
    assert answer["columns"]["epoch"] == list(range(1, 401))
    assert answer["layers"]["block2.weight"]["pruned"][:2] == [(7 + 2) % 50, (14 + 2) % 50]


def test_small_runs_keep_nothing_and_a_deleted_run_takes_its_kept_answers(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    small, lease = tracked_run(client, 3)
    builds: list[str] = []
    monkeypatch.setitem(service.HISTORY_BUILDERS, "records", lambda *a: builds.append("records") or b"")
    client.post(f"/api/tracked-runs/{small}/finish", json={"status": "completed"}, headers=lease)
    assert kept(db, small) == {}  # a few kilobytes: cheaper to build than to store
    assert builds == []  # and its size is told from one aggregate, not by building it (a sweep's short runs)
    monkeypatch.undo()
    big, lease = tracked_run(client, 400)
    client.post(f"/api/tracked-runs/{big}/finish", json={"status": "failed", "error": "stopped"}, headers=lease)
    assert set(kept(db, big)) == {"records", "columns"}
    assert client.delete(f"/api/runs/{big}").status_code == 204
    assert kept(db, big) == {}


def test_a_short_runs_finish_schedules_no_background_work(client: TestClient,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A sweep's short runs: their size is told in the finish's own transaction, and nothing is scheduled.
    scheduled: list[int] = []
    monkeypatch.setattr(service, "keep_history", lambda db, run_id: scheduled.append(run_id))
    small, lease = tracked_run(client, 3)
    assert client.post(f"/api/tracked-runs/{small}/finish", json={"status": "completed"},
                       headers=lease).status_code == 204
    run_id = client.post("/api/runs", json=digits_config(tags=[], training={"epochs": 2})).json()["id"]
    headers = claim(client, run_id)
    for record in epochs(2, layers=2):
        client.post(f"/api/worker/runs/{run_id}/epochs", json={**record, "worker": "w"}, headers=headers)
    assert client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w", "status": "completed"},
                       headers=headers).status_code == 204
    assert scheduled == []
    big, lease = tracked_run(client, 400)
    client.post(f"/api/tracked-runs/{big}/finish", json={"status": "completed"}, headers=lease)
    assert scheduled == [big]


def test_a_worker_run_keeps_its_history_when_it_completes_not_when_handed_back(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.HistoryCache, "MIN_BYTES", 0)
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    run_id = client.post("/api/runs", json=digits_config(tags=[], training={"epochs": 2})).json()["id"]
    headers = claim(client, run_id)
    for record in epochs(2, layers=2):
        sent = client.post(f"/api/worker/runs/{run_id}/epochs", json={**record, "worker": "w"}, headers=headers)
        assert sent.status_code == 200, sent.text
    requeue = client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w", "status": "requeue"},
                          headers=headers)
    assert requeue.status_code == 204 and kept(db, run_id) == {}
    headers = claim(client, run_id)
    done = client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w", "status": "completed"},
                       headers=headers)
    assert done.status_code == 204, done.text
    assert set(kept(db, run_id)) == {"records", "columns"}
    service.HISTORIES.entries.clear()
    assert [item["epoch"] for item in read(client, run_id, "records")["items"]] == [1, 2]


def test_a_history_that_cannot_be_kept_does_not_fail_the_finish(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> bytes:
        raise RuntimeError("disk full")

    monkeypatch.setitem(service.HISTORY_BUILDERS, "columns", broken)
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    run_id, lease = tracked_run(client, 400)
    finished = client.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "completed"}, headers=lease)
    assert finished.status_code == 204
    assert kept(db, run_id) == {}
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "completed"


def test_the_size_estimate_that_skips_small_histories_never_undercounts(client: TestClient) -> None:
    """A history is skipped only when an upper bound of its size is under the threshold, so one that is
    larger is always kept: each epoch's record outside its layer stats and extra scalars is under
    EPOCH_SCALARS_BYTES, with every field a worker reports at its longest."""
    run_id = client.post("/api/runs", json=digits_config(tags=[], training={"epochs": 3})).json()["id"]
    headers = claim(client, run_id)
    for record in epochs(3, layers=2):
        record.update(train_loss=1 / 3, train_acc=1 / 3, test_loss=1 / 7, lr=1 / 9, nonzero=123456789,
                      total=987654321, epoch_seconds=1 / 11, samples_per_s=1 / 13, sparsity=1 / 17)
        sent = client.post(f"/api/worker/runs/{run_id}/epochs", json={**record, "worker": "w" * 200},
                           headers=headers)
        assert sent.status_code == 200, sent.text
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        rows = repository.list_epoch_texts(session, run_id, service.EPOCH_SCALARS)
        text = repository.epochs_text_bytes(session, run_id)
    assert text == sum(len(row[-2]) + len(row[-1] or "") for row in rows)
    for build in service.HISTORY_BUILDERS.values():
        assert len(build(run_id, rows)) <= len(rows) * service.EPOCH_SCALARS_BYTES + text
