"""`Last-Event-ID` is a resume point only when it is ASCII digits; anything else is ignored, never a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.artifacts import artifact_path
from tests.backend.conftest import digits_config


@pytest.fixture
def finished_run(client: TestClient) -> int:
    """A cancelled run: its stream sends its events and ends."""
    run_id: int = client.post("/api/runs", json=digits_config()).json()["id"]
    assert client.post(f"/api/runs/{run_id}/cancel").status_code in (200, 202)
    return run_id


def events(client: TestClient, run_id: int, last_event_id: bytes | None = None) -> str:
    """The stream's text, with the header's bytes as sent (TestClient would re-encode b"\xb2" as UTF-8)."""
    headers = {b"Last-Event-ID": last_event_id} if last_event_id is not None else {}

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.get(f"/api/runs/{run_id}/events", headers=headers)

    assert client.portal is not None  # the app runs (lifespan and all) on the TestClient's event loop
    answer = client.portal.call(get)
    assert answer.status_code == 200, answer.text
    return answer.text


@pytest.mark.parametrize("value", [b"\xb2", b" \xb9\xb3 ", b"1\xb2", b"abc", b"-1", b"+1"])
def test_a_last_event_id_of_other_than_ascii_digits_is_ignored(client: TestClient, finished_run: int,
                                                               value: bytes) -> None:
    everything = events(client, finished_run)
    assert "event: status" in everything
    assert events(client, finished_run, value) == everything


def test_a_last_event_id_past_every_event_sends_none(client: TestClient, finished_run: int) -> None:
    for value in (b"2147483647", b"9" * 5000, b"0" * 5000 + b"7" * 12):  # int() refuses over 4300 digits
        assert "event: status" not in events(client, finished_run, value)
    assert "event: status" in events(client, finished_run, b"0" * 5000)


def test_a_checkpoint_folder_named_with_superscript_digits_is_left_alone(client: TestClient) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    stray = artifact_path(settings.resolved_artifact_dir, 1, "checkpoint.pt").parent.parent / "\u00b2" / "checkpoint.pt"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"checkpoint")
    assert client.app.state.dispatcher.release_checkpoints() == []  # type: ignore[attr-defined]
    assert stray.exists()
