"""Free-form JSON (summaries, a sweep's base), sweep error echoes, overflowing numbers and heartbeat plugin names
are bounded: bad input is a short 4xx, never a 500, a huge answer, or a stored surprise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from backend.runs import repository
from tests.backend.conftest import WORKER, claim, digits_config

JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def tracked_run(client: TestClient) -> tuple[int, dict[str, str]]:
    created = client.post("/api/tracked-runs", json={"name": "own-loop", "config": {"lr": 0.1}}).json()
    return created["id"], {"X-Prunescope-Lease": created["lease"]}


def test_a_deeply_nested_tracked_summary_is_a_422_naming_it(client: TestClient) -> None:
    run_id, lease = tracked_run(client)
    body = {"status": "failed", "summary": {"x": nested(500)}}
    answer = client.post(f"/api/tracked-runs/{run_id}/finish", json=body, headers=lease)
    assert answer.status_code == 422, answer.text  # was a 500: the summary could be parsed but not serialised
    assert "summary" in answer.text and "nested deeper" in answer.text
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"  # nothing was written


def test_a_deeply_nested_worker_summary_is_a_422(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    headers = claim(client, run_id)
    body = {"worker": "w", "status": "failed", "summary": {"final_test_acc": 0.5, "x": nested(300)}}
    answer = client.post(f"/api/worker/runs/{run_id}/finish", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert "summary" in answer.text


def test_a_huge_tracked_summary_is_refused_and_a_modest_one_kept(client: TestClient) -> None:
    run_id, lease = tracked_run(client)
    huge = {"status": "completed", "summary": {"items": [{"a": i} for i in range(20_000)]}}
    answer = client.post(f"/api/tracked-runs/{run_id}/finish", json=huge, headers=lease)
    assert answer.status_code == 422, answer.text
    assert "more than 10000 values" in answer.text
    modest = {"status": "completed", "summary": {"final_test_acc": 0.9, "notes": {"seed": [1, 2, 3]}}}
    assert client.post(f"/api/tracked-runs/{run_id}/finish", json=modest, headers=lease).status_code == 204
    assert client.get(f"/api/runs/{run_id}").json()["summary"]["notes"] == {"seed": [1, 2, 3]}


def test_the_runs_list_leaves_summaries_unread(client: TestClient) -> None:
    run_id, lease = tracked_run(client)
    summary = {"status": "completed", "summary": {"items": [{"a": i} for i in range(3000)]}}
    assert client.post(f"/api/tracked-runs/{run_id}/finish", json=summary, headers=lease).status_code == 204
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        runs, total = repository.list_runs(session, limit=5)
        assert total == 1 and "summary" in inspect(runs[0]).unloaded
    assert client.get("/api/runs?limit=5").json()["items"][0]["id"] == run_id


def test_a_sweep_base_nested_deeper_than_free_form_json_allows_is_a_422(client: TestClient) -> None:
    body = {"name": "deep", "base": {"dataset": {"name": "digits"}, "training": {"lr": nested(300)}},
            "grid": {"training.lr": [0.1, 0.01]}}
    answer = client.post("/api/sweeps", json=body)
    assert answer.status_code == 422, answer.text  # was a 500 serialising the stored base back
    assert answer.json()["detail"][0]["loc"] == ["body", "base"]
    assert "nested deeper" in answer.text
    assert client.get("/api/sweeps").json()["total"] == 0


def test_a_sweep_error_does_not_repeat_a_huge_grid_value(client: TestClient) -> None:
    body = {"name": "amp", "base": {"dataset": {"name": "digits"}},
            "grid": {"name": ["A" * 950_000], "training.seed": list(range(60))}}
    answer = client.post("/api/sweeps", json=body)
    assert answer.status_code == 422
    assert len(answer.content) < 64 * 1024  # was ~95 MB: the value in every one of 50 messages and echoes
    first = answer.json()["detail"][0]
    assert "combination 1" in first["msg"] and "AAAA" in first["msg"]
    assert first["combination"]["training.seed"] == 0  # short values are echoed as they are
    assert first["combination"]["name"].startswith('"AAA') and len(first["combination"]["name"]) <= 100


def test_a_number_that_overflows_a_double_is_refused_where_it_stands(client: TestClient) -> None:
    # The grid overrides base.training.lr, so no config check ever saw it: it was stored as "lr": null.
    body = (b'{"name": "s", "base": {"dataset": {"name": "digits"}, "training": {"lr": 1e400}},'
            b' "grid": {"training.lr": [0.1]}}')
    answer = client.post("/api/sweeps", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "base", "training", "lr"]
    assert "1e400" in detail["msg"]
    assert client.get("/api/sweeps").json()["total"] == 0


@pytest.mark.parametrize("text", [b"-1e400", b"1.5e309", b"[1e999]"])
def test_overflowing_numbers_anywhere_in_a_body_are_refused(client: TestClient, text: bytes) -> None:
    run_id, lease = tracked_run(client)
    body = b'{"status": "completed", "summary": {"final_test_acc": 0.5, "x": ' + text + b"}}"
    answer = client.post(f"/api/tracked-runs/{run_id}/finish", content=body, headers={**lease, **JSON})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][:3] == ["body", "summary", "x"]


@pytest.mark.parametrize("beat", [
    {"models": {"<img src=x onerror=alert(1)>": ["fc"]}},
    {"models": {"": ["fc"]}},
    {"datasets": ["has space"]},
    {"datasets": ["x" * 65]},
    {"model_params": {"1bad": {"params": []}}},
])
def test_heartbeat_plugin_names_must_be_plugin_names(client: TestClient, beat: dict[str, Any]) -> None:
    answer = client.post("/api/worker/heartbeat", json={"worker": "w", **beat}, headers=WORKER)
    assert answer.status_code == 422, answer.text
    options = json.dumps(client.get("/api/options").json())
    assert "onerror" not in options and "has space" not in options


def test_a_heartbeat_with_good_plugin_names_is_listed(client: TestClient) -> None:
    beat = {"worker": "w", "models": {"my_net-v2.1": ["fc.weight"]}, "datasets": ["MyData"]}
    assert client.post("/api/worker/heartbeat", json=beat, headers=WORKER).status_code == 200
    options = json.dumps(client.get("/api/options").json())
    assert "my_net-v2.1" in options and "MyData" in options


def test_a_large_body_is_checked_for_nan_off_the_event_loop_all_the_same(client: TestClient) -> None:
    run_id, lease = tracked_run(client)
    body = b'{"status": "completed", "summary": {"pad": "' + b"x" * 1_500_000 + b'", "x": NaN}}'
    answer = client.post(f"/api/tracked-runs/{run_id}/finish", content=body, headers={**lease, **JSON})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "summary", "x"]
