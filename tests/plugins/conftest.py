"""Plugin tests: a clean registry around each test, and the API test client of tests/backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prunescope import plugins
from tests.backend.conftest import api_settings, client  # noqa: F401  (fixtures)
from worker.engine.capabilities import worker_capabilities


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    plugins.reset()
    worker_capabilities.cache_clear()
    yield
    plugins.reset()
    worker_capabilities.cache_clear()
