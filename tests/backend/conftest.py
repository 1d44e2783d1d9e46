"""An API app on a test database, with the dispatcher off (tests call its `tick`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from prunescope.config import Settings

WORKER = {"Authorization": "Bearer worker-secret"}


@pytest.fixture
def api_settings(settings: Settings, database_url: str) -> Settings:
    return settings.model_copy(update={"database_url": database_url})


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, start_dispatcher=False)) as test_client:
        yield test_client


def digits_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"name": "digits-quick", "tags": ["test"], "dataset": {"name": "digits"},
                              "training": {"epochs": 3, "batch_size": 64}}
    config.update(overrides)
    return config
