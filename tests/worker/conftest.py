"""A worker talking to the real API app in-process (SQLite, no broker), with fake or real trainers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from prunescope.config import Settings
from worker.api_client import WorkerApi
from worker.heartbeat import WorkerIdentity, WorkerState

TOKEN = "worker-secret"


@dataclass
class Harness:
    """The API under test, a worker's settings, identity and state, and an API client wired to the app."""

    client: TestClient
    settings: Settings
    identity: WorkerIdentity
    state: WorkerState
    api: WorkerApi

    def submit(self, epochs: int = 3, **overrides: Any) -> int:
        config = {"name": "worker-test", "dataset": {"name": "digits"}, "training": {"epochs": epochs},
                  **overrides}
        response = self.client.post("/api/runs", json=config)
        assert response.status_code == 201, response.text
        run_id: int = response.json()["id"]
        return run_id

    def run(self, run_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/api/runs/{run_id}").json()
        return body

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client.get(f"/api/runs/{run_id}/epochs").json()["items"]
        return items

    def artifact(self, run_id: int, name: str) -> Path:
        return self.settings.resolved_artifact_dir / "runs" / str(run_id) / name

    def reap(self, run_id: int) -> None:
        """The run's worker went silent past the heartbeat timeout: the dispatcher requeues it."""
        from datetime import timedelta

        from backend.tables import Run, utcnow

        app: Any = self.client.app
        app.state.dispatcher.started_at -= timedelta(hours=1)
        with app.state.db.writing() as session:
            session.get(Run, run_id).last_heartbeat_at = utcnow() - timedelta(hours=1)
        app.state.dispatcher.reap_silent_runs()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(home=tmp_path / "home", worker_token=TOKEN, redis_url="redis://127.0.0.1:1/0",
                        database_url=f"sqlite:///{tmp_path / 'api.db'}", heartbeat_timeout=60,
                        report_retry_seconds=5, checkpoint_seconds=0, allowed_hosts="testserver,localhost")
    with TestClient(create_app(settings, start_dispatcher=False)) as client:
        api = WorkerApi("http://testserver", TOKEN)
        api.http.close()
        api.http = client  # the in-process app, through the same httpx interface
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        identity = WorkerIdentity(name="host:1", hostname="host", queues=["cpu"], device="cpu")
        yield Harness(client, settings, identity, WorkerState(), api)
