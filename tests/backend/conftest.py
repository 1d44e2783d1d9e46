"""An API app on a test database, with the dispatcher off (tests call its `tick`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from prunescope.config import Settings
from prunescope.contract.worker_api import LEASE_HEADER

WORKER = {"Authorization": "Bearer worker-secret"}


def claim(client: TestClient, run_id: int, worker: str = "w") -> dict[str, str]:
    """Start a run as a worker does; returns the headers of its later calls (worker token and the lease)."""
    answer = client.post(f"/api/worker/runs/{run_id}/start", json={"worker": worker}, headers=WORKER).json()
    return {**WORKER, LEASE_HEADER: answer["lease"]} if answer.get("proceed") else dict(WORKER)


@pytest.fixture
def api_settings(settings: Settings, database_url: str) -> Settings:
    # The API checks the Host header: TestClient sends "testserver".
    return settings.model_copy(update={"database_url": database_url, "allowed_hosts": "localhost,testserver"})


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, start_dispatcher=False)) as test_client:
        yield test_client


def digits_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"name": "digits-quick", "tags": ["test"], "dataset": {"name": "digits"},
                              "training": {"epochs": 3, "batch_size": 64}}
    config.update(overrides)
    return config
