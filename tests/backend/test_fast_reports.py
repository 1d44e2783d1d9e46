"""Report bodies validated straight from their bytes: the same answers as FastAPI's own parsing, bad input too."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.types import Message

from backend.app import create_app
from backend.reports import endpoints as reports
from backend.reports.bodies import ValidatedBodyRoute, _ValidatedBodyRequest
from backend.tracking import endpoints as tracking
from prunescope.config import Settings
from prunescope.contract.tracking import TrackedBatch
from tests.backend.conftest import claim, digits_config


def parsed(body: bytes) -> Any:
    """What `json()` of a report request holding `body` gives FastAPI."""
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_message: Message) -> None:
        raise AssertionError("nothing is sent")

    scope = {"type": "http", "method": "POST", "headers": [], "path": "/", "query_string": b""}
    return asyncio.run(_ValidatedBodyRequest(scope, receive, send, TrackedBatch).json())


def test_a_valid_body_reaches_fastapi_validated_and_a_bad_one_as_plain_json() -> None:
    good = parsed(orjson.dumps({"epochs": [{"epoch": 1, "train_loss": 0.5}]}))
    assert isinstance(good, TrackedBatch) and good.epochs[0].train_loss == 0.5
    assert parsed(b'{"epochs": [{"epoch": 0}]}') == {"epochs": [{"epoch": 0}]}  # FastAPI answers it
    with pytest.raises(ValueError):
        parsed(b'{"epochs": [')


def test_report_routes_take_their_bodies_this_way() -> None:
    for router in (reports.router, tracking.router):
        routes = [r for r in router.routes if isinstance(r, APIRoute)]
        assert routes and all(isinstance(r, ValidatedBodyRoute) for r in routes)


@pytest.fixture
def sqlite_client(settings: Settings, tmp_path: Any) -> Any:
    url = f"sqlite:///{tmp_path / 'fast.db'}"
    with TestClient(create_app(settings.model_copy(update={"database_url": url, "allowed_hosts": "testserver"}),
                               start_dispatcher=False)) as client:
        yield client


def test_bad_batches_and_reports_get_the_same_located_422s(sqlite_client: TestClient) -> None:
    client = sqlite_client
    created = client.post("/api/tracked-runs", json={"name": "t", "config": {}}).json()
    path, lease = f"/api/tracked-runs/{created['id']}/batch", {"X-Prunescope-Lease": created["lease"]}
    json_headers = {**lease, "Content-Type": "application/json"}
    bad = client.post(path, json={"epochs": [{"epoch": 1}, {"epoch": 0}]}, headers=lease)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "epochs", 1, "epoch"]
    unknown = client.post(path, json={"epochs": [{"epoch": 1, "nope": 1}]}, headers=lease)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "epochs", 0, "nope"]
    for raw in (b'{"epochs": [', b'{"epochs": [{"epoch": 1, "lr": NaN}]}', b'{"epochs": [{"epoch": 1, "lr": 1e999}]}'):
        assert client.post(path, content=raw, headers=json_headers).status_code == 422, raw
    assert client.post(path, json={"epochs": [{"epoch": 2, "lr": 0.1}]}, headers=lease).status_code == 200
    epochs = client.get(f"/api/runs/{created['id']}/epochs").json()["items"]
    assert [(e["epoch"], e["lr"]) for e in epochs] == [(2, 0.1)]  # nothing of the refused bodies was stored

    run_id = client.post("/api/runs", json=digits_config(tags=[])).json()["id"]
    headers = claim(client, run_id)
    report = f"/api/worker/runs/{run_id}/epochs"
    missing = client.post(report, json={"epoch": 1}, headers=headers)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "worker"]
    assert client.post(report, json={"worker": "w", "epoch": 1, "train_acc": 2}, headers=headers).status_code == 422
    assert client.post(report, json={"worker": "w", "epoch": 1}, headers=headers).status_code == 200
    stale = client.post(report, json={"worker": "w", "epoch": 1}, headers={**headers, "X-Prunescope-Lease": "x"})
    assert stale.status_code == 409
    assert client.post("/api/worker/runs/999/epochs", json={"worker": "w", "epoch": 1},
                       headers=headers).status_code == 404


def test_an_epoch_report_adds_its_event_and_wakes_the_runs_streams_after_commit(sqlite_client: TestClient) -> None:
    client = sqlite_client
    woken: list[int] = []
    hub = client.app.state.hub  # type: ignore[attr-defined]
    notify = hub.notify

    def spy(run_id: int) -> None:
        woken.append(run_id)
        notify(run_id)

    hub.notify = spy
    run_id = client.post("/api/runs", json=digits_config(tags=[])).json()["id"]
    headers = claim(client, run_id)
    woken.clear()
    layers = [{"name": "fc1.weight", "shape": [6, 16], "sparsity": 0.5, "pruned": 1}]
    body = {"worker": "w", "epoch": 1, "train_loss": 0.5, "test_acc": 0.75, "layers": layers}
    assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=headers).status_code == 200
    assert woken == [run_id]
    with client.stream("GET", f"/api/runs/{run_id}/events", params={"after": 0}) as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("event: epoch"):
                data = orjson.loads(next(line for line in lines if line.startswith("data:"))[5:])
                break
    assert data["epoch"] == 1 and data["attempt"] == 1 and data["train_loss"] == 0.5
    assert data["layers"][0] == {**layers[0], "regrown": 0, "threshold": None, "histogram": None}
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["epochs_done"], run["test_acc"], run["best_test_acc"]) == (1, 0.75, 0.75)
    assert client.post(f"/api/worker/runs/{run_id}/epochs", json={**body, "worker": "w", "test_acc": 0.5},
                       headers=headers).status_code == 200  # replayed: replaced, the best stays
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["epochs_done"], run["test_acc"], run["best_test_acc"]) == (1, 0.5, 0.75)
    assert [e["test_acc"] for e in client.get(f"/api/runs/{run_id}/epochs").json()["items"]] == [0.5]
