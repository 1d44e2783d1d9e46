"""A write without its route's token is refused (401) before any of its body is read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from backend.app import create_app
from prunescope.config import Settings
from tests.backend.conftest import WORKER, digits_config

API = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def token_client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings.model_copy(update={"api_token": "s3cret"}),
                               start_dispatcher=False)) as client:
        yield client


def raw_post(client: TestClient, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bool]:
    """POST `path` straight to the ASGI app; its status, headers, and whether the app read any of the body."""
    read: list[bool] = []
    sent: list[Message] = []

    async def receive() -> Message:
        read.append(True)
        return {"type": "http.request", "body": b'{"epoch": 1, "worker": "w"}', "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    raw_headers = [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"content-length", b"27"),
                   *((k.lower().encode(), v.encode()) for k, v in headers.items())]
    scope: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                             "query_string": b"", "headers": raw_headers, "client": ("127.0.0.1", 5000),
                             "server": ("testserver", 80)}
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], answer_headers, bool(read)


@pytest.mark.parametrize("path, headers", [
    ("/api/worker/runs/3/epochs", {}),
    ("/api/worker/runs/3/epochs", {"Authorization": "Bearer wrong"}),
    ("/api/worker/runs/3/epochs", API),  # the API token is not the worker token
    ("/api/worker/heartbeat", {"Authorization": "Basic d29ya2VyLXNlY3JldA=="}),
    ("/api/tracked-runs/4/batch", {}),
    ("/api/tracked-runs/4/finish", {"Authorization": "Bearer nope"}),
    ("/api/tracked-runs", {}),
    ("/api/runs", {}),
    ("/api/sweeps", {}),
])
def test_a_write_without_its_token_is_refused_before_its_body_is_read(
        token_client: TestClient, path: str, headers: dict[str, str]) -> None:
    status, answer_headers, read_body = raw_post(token_client, path, headers)
    assert status == 401
    assert not read_body  # a 120 MB body without a token used to be read and parsed whole before the 401
    assert answer_headers["www-authenticate"] == "Bearer"
    assert answer_headers["x-content-type-options"] == "nosniff"  # the other guards' headers still apply


def test_a_write_with_its_token_still_reaches_its_route(token_client: TestClient) -> None:
    status, _headers, read_body = raw_post(token_client, "/api/worker/runs/999/epochs", WORKER)
    assert read_body and status != 401
    status, _headers, read_body = raw_post(token_client, "/api/tracked-runs/999/batch", API)
    assert read_body and status != 401


def test_the_token_refusal_reads_as_the_dependency_s_did(token_client: TestClient) -> None:
    worker = token_client.post("/api/worker/heartbeat", json={"worker": "w"})
    assert worker.status_code == 401
    assert worker.json() == {"detail": "worker reports need `Authorization: Bearer <worker token>`"}
    api = token_client.post("/api/runs", json=digits_config())
    assert api.status_code == 401
    assert api.json() == {"detail": "this endpoint needs `Authorization: Bearer <API token>`"}
    assert token_client.post("/api/runs", json=digits_config(), headers=API).status_code == 201


def test_without_an_api_token_user_writes_need_none_but_worker_reports_still_do(client: TestClient) -> None:
    status, _headers, read_body = raw_post(client, "/api/tracked-runs/999/batch", {})
    assert read_body and status != 401
    status, _headers, read_body = raw_post(client, "/api/worker/runs/3/epochs", {})
    assert status == 401 and not read_body
