"""A live API (uvicorn in a thread, with an API token) for the SDK to talk to, and a small pruned model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from backend.app import create_app
from prunescope.config import Settings
from prunescope.services import free_port

TOKEN = "api-secret"


@dataclass
class LiveApi:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_api(home: Path, port: int | None = None, **overrides: Any) -> LiveApi:
    settings = Settings(home=home, worker_token="worker-secret", redis_url="redis://127.0.0.1:1/0", api_token=TOKEN,
                        **overrides)
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, start_dispatcher=False), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    return LiveApi(f"http://127.0.0.1:{port}", settings, server, thread)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    live = start_api(tmp_path_factory.mktemp("sdk-api"))
    yield live
    live.stop()


@pytest.fixture
def dead_api() -> str:
    """An address where nothing listens: the SDK must spool."""
    return f"http://127.0.0.1:{free_port()}"
