"""Shared fixtures: settings in a temporary home, databases (SQLite and PostgreSQL), private Redis servers."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from prunescope import services
from prunescope.config import Settings


def missing_dependency(what: str, how: str) -> NoReturn:
    """Tests that need an outside service or tool skip on a developer's machine without it; CI must have it."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: {how}")
    pytest.skip(f"{what} is missing ({how}); CI runs these tests")


POSTGRES_URL = os.environ.get("PRUNESCOPE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"prunescope_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}", f"{type(exc).__name__}: {exc}")
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Storage tests run on both databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'prunescope.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", worker_token="worker-secret", redis_url="redis://127.0.0.1:1/0",
                    heartbeat_timeout=60)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private Redis for tests that stop or fill it; never the machine's shared one."""
    port = services.free_port()
    proc = services.start_redis(port, tmp_path / "redis")
    yield f"redis://127.0.0.1:{port}/0", proc
    services.stop([proc])
