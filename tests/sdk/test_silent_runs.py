"""A tracked run whose script goes silent ends failed (never requeued to a worker); if it writes again, it revives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.tables import Run, utcnow
from prunescope import maskcodec
from prunescope.config import Settings
from prunescope.contract.worker_api import LEASE_HEADER


def test_silent_tracked_run_fails_with_the_reason_and_revives_when_its_script_writes(tmp_path: Path,
                                                                                    database_url: str) -> None:
    # Both databases: the batch path's bulk deletes and inserts must hold on PostgreSQL too.
    settings = Settings(home=tmp_path, worker_token="worker-secret", redis_url="redis://127.0.0.1:1/0",
                        allowed_hosts="testserver", heartbeat_timeout=30, database_url=database_url)
    with TestClient(create_app(settings, start_dispatcher=False)) as client:
        created = client.post("/api/tracked-runs", json={"name": "quiet"}).json()
        run_id, lease = created["id"], created["lease"]
        dispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
        dispatcher.started_at = utcnow() - timedelta(hours=1)
        with dispatcher.db.writing() as session:
            session.get(Run, run_id).last_heartbeat_at = utcnow() - timedelta(minutes=5)
        dispatcher.reap_silent_runs()
        detail = client.get(f"/api/runs/{run_id}").json()
        assert detail["status"] == "failed" and "the script sent nothing for 30 s" in detail["error"]
        assert detail["worker"] is not None  # not handed to the queue

        key = maskcodec.encode(np.array([[True, False], [True, True]])).to_json()
        batch = {"epochs": [{"epoch": 1, "train_loss": 0.1, "extra": {"gn": 2.0}, "masks": {"fc.weight": key}}],
                 "points": [{"step": 5, "values": {"loss": 0.3}}]}
        for _ in range(2):  # a replay replaces, never duplicates
            ack = client.post(f"/api/tracked-runs/{run_id}/batch", json=batch, headers={LEASE_HEADER: lease})
            assert ack.status_code == 200, ack.text
        assert len(client.get(f"/api/runs/{run_id}/epochs").json()["items"]) == 1
        assert len(client.get(f"/api/tracked-runs/{run_id}/points").json()["items"]) == 1
        assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"
        assert client.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "completed"},
                           headers={LEASE_HEADER: lease}).status_code == 204
        assert client.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "completed"},
                           headers={LEASE_HEADER: lease}).status_code == 204  # a replayed finish is a no-op
        conflict = client.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "failed"},
                               headers={LEASE_HEADER: lease})
        assert conflict.status_code == 409
        assert client.get(f"/api/runs/{run_id}").json()["status"] == "completed"


def test_tracked_batch_body_is_size_limited(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, worker_token="worker-secret", redis_url="redis://127.0.0.1:1/0",
                        allowed_hosts="testserver", max_report_bytes=20_000)
    with TestClient(create_app(settings, start_dispatcher=False)) as client:
        created = client.post("/api/tracked-runs", json={"name": "big"}).json()
        body = {"epochs": [{"epoch": e, "extra": {f"s{i}": 1.0 for i in range(50)}} for e in range(1, 50)]}
        response = client.post(f"/api/tracked-runs/{created['id']}/batch", json=body,
                               headers={LEASE_HEADER: created["lease"]})
        assert response.status_code == 413
        assert response.json()["detail"] == ("request body over this endpoint's limit of 20,000 bytes; "
                                             "raise PRUNESCOPE_MAX_REPORT_BYTES where the API runs")
        assert client.get(f"/api/runs/{created['id']}/epochs").json()["items"] == []
