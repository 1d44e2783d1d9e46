"""Names and tags are labels on one line: a control character in one is refused where it is sent."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import digits_config

BAD = ["a\nb", "bell\u0007", "esc\u001b[31mred", "tab\tname", "del\u007f"]


@pytest.mark.parametrize("bad", BAD)
def test_control_characters_in_names_and_tags_are_refused(client: TestClient, bad: str) -> None:
    # Stored as sent: a newline or an escape sequence in a name broke the runs list, the CLI's table and CSV rows.
    assert client.post("/api/runs", json=digits_config(name=bad)).status_code == 422
    assert client.post("/api/runs", json=digits_config(tags=[bad])).status_code == 422
    sweep = {"name": bad, "base": digits_config(), "grid": {"training.seed": [0, 1]}}
    assert client.post("/api/sweeps", json=sweep).status_code == 422
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    assert client.patch(f"/api/runs/{run_id}", json={"name": bad}).status_code == 422
    assert client.patch(f"/api/runs/{run_id}", json={"tags": [bad]}).status_code == 422
    tracked = {"name": bad, "lease": "x" * 43}
    refused = client.post("/api/tracked-runs", json=tracked)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "name", refused.text
    assert client.post("/api/tracked-runs", json={**tracked, "name": "fine"}).status_code == 201
    assert client.get("/api/runs").json()["total"] == 2


def test_other_unicode_in_names_is_kept(client: TestClient) -> None:
    name = "слой · 剪枝 · naïve ✓ <b>bold</b>"
    answer = client.post("/api/runs", json=digits_config(name=name, tags=["ρ=0.9"]))
    assert answer.status_code == 201
    run = client.get(f"/api/runs/{answer.json()['id']}").json()
    assert run["name"] == name and run["tags"] == ["ρ=0.9"]
    notes = client.patch(f"/api/runs/{run['id']}", json={"notes": "line one\nline two\ttabbed"})
    assert notes.status_code == 200  # notes are text, not a label
