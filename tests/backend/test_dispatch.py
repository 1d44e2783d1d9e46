"""The dispatcher against a real Redis: JSON messages on the right queue, and messages a restarted broker lost."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.tables import Run, utcnow
from prunescope.config import Settings
from tests.backend.conftest import digits_config


@pytest.fixture
def broker_client(api_settings: Settings, redis_server: tuple[str, subprocess.Popen[bytes]]) -> Iterator[TestClient]:
    url, _ = redis_server
    with TestClient(create_app(api_settings.model_copy(update={"redis_url": url}), start_dispatcher=False)) as client:
        yield client


def _queued_messages(client: TestClient, queue: str) -> list[dict[str, object]]:
    broker = redis.Redis.from_url(client.app.state.settings.resolved_redis_url)  # type: ignore[attr-defined]
    return [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]


def test_runs_are_sent_as_json_to_the_queue_of_their_device(broker_client: TestClient) -> None:
    cpu = broker_client.post("/api/runs", json=digits_config(device="cpu")).json()["id"]
    gpu = broker_client.post("/api/runs", json=digits_config(device="cuda")).json()["id"]
    assert broker_client.app.state.dispatcher.dispatch_pending() == 2  # type: ignore[attr-defined]
    for queue, run_id in (("cpu", cpu), ("gpu", gpu)):
        [message] = _queued_messages(broker_client, queue)
        assert message["content-type"] == "application/json"
        args = json.loads(base64.b64decode(str(message["body"])))[0]
        assert args == [run_id]
    assert broker_client.get(f"/api/runs/{cpu}").json()["queue"] == "cpu"
    assert broker_client.app.state.dispatcher.dispatch_pending() == 0  # type: ignore[attr-defined]


def test_messages_lost_by_a_restarted_broker_are_sent_again(broker_client: TestClient) -> None:
    app = broker_client.app
    run_id = broker_client.post("/api/runs", json=digits_config(device="cpu")).json()["id"]
    app.state.dispatcher.dispatch_pending()  # type: ignore[attr-defined]
    redis.Redis.from_url(app.state.settings.resolved_redis_url).flushall()  # type: ignore[attr-defined]
    app.state.dispatcher.requeue_lost_messages()  # type: ignore[attr-defined]
    assert _queued_messages(broker_client, "cpu") == []  # too recent to call lost
    with app.state.db.writing() as session:  # type: ignore[attr-defined]
        session.get(Run, run_id).dispatched_at = utcnow() - timedelta(hours=1)
    app.state.dispatcher.tick()  # type: ignore[attr-defined]
    assert len(_queued_messages(broker_client, "cpu")) == 1


def test_checkpoints_of_runs_that_cannot_resume_are_released(client: TestClient) -> None:
    from backend.artifacts import artifact_path

    app = client.app
    settings = app.state.settings  # type: ignore[attr-defined]
    queued = client.post("/api/runs", json=digits_config()).json()["id"]
    cancelled = client.post("/api/runs", json=digits_config()).json()["id"]
    assert client.post(f"/api/runs/{cancelled}/cancel").status_code in (200, 202)
    paths = {}
    for run_id in (queued, cancelled, 999_999):  # the last: a run deleted while its file stayed
        path = artifact_path(settings.resolved_artifact_dir, run_id, "checkpoint.pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"checkpoint")
        paths[run_id] = path
    released = app.state.dispatcher.release_checkpoints()  # type: ignore[attr-defined]
    assert released == [cancelled, 999_999]
    assert paths[queued].exists()  # a queued run may still resume from it
    assert not paths[cancelled].exists() and not paths[999_999].exists()


def test_ticks_look_for_checkpoints_to_release_at_most_every_release_seconds(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The look lists every run's artifact folder: at 100 000 runs, every 2-s tick would keep a core busy.
    from backend import dispatch

    dispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
    looks: list[float] = []
    monkeypatch.setattr(dispatcher, "release_checkpoints", lambda: looks.append(now[0]) or [])
    now = [1000.0]
    monkeypatch.setattr(dispatcher, "clock", lambda: now[0])
    dispatcher.released_at = None
    for step in (0.0, 2.0, 2.0, dispatch.RELEASE_SECONDS - 4.0, 1.0):
        now[0] += step
        dispatcher.tick()
    assert looks == [1000.0, 1000.0 + dispatch.RELEASE_SECONDS]


def count_writes(db: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count the write transactions `db` opens from now on; the answer is read by calling the result."""
    calls = 0
    writing = db.writing

    def counted() -> object:
        nonlocal calls
        calls += 1
        return writing()

    monkeypatch.setattr(db, "writing", counted)
    return lambda: calls


def test_a_sweep_of_runs_is_marked_sent_in_one_write(broker_client: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    app = broker_client.app
    ids = [broker_client.post("/api/runs", json=digits_config(name=f"s{i}")).json()["id"] for i in range(5)]
    db = app.state.db  # type: ignore[attr-defined]
    writes = count_writes(db, monkeypatch)
    assert app.state.dispatcher.dispatch_pending() == 5  # type: ignore[attr-defined]
    assert writes() == 1
    assert {broker_client.get(f"/api/runs/{i}").json()["queue"] for i in ids} == {"cpu"}
    assert len(_queued_messages(broker_client, "cpu")) == 5


def test_a_tick_with_no_silent_run_takes_no_write_lock(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    app = client.app
    dispatcher = app.state.dispatcher  # type: ignore[attr-defined]
    dispatcher.started_at -= timedelta(hours=1)
    db = app.state.db  # type: ignore[attr-defined]
    writes = count_writes(db, monkeypatch)
    dispatcher.reap_silent_runs()
    assert writes() == 0
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    client.post(f"/api/worker/runs/{run_id}/start", json={"worker": "w"},
                headers={"Authorization": "Bearer worker-secret"})
    with db.writing() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.last_heartbeat_at = utcnow() - timedelta(hours=1)
    before = writes()
    dispatcher.reap_silent_runs()
    assert writes() - before == 1
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "queued"  # requeued to resume


def test_an_auto_run_waiting_on_the_gpu_queue_moves_to_the_cpu_queue_when_no_gpu_worker_is_left(
        broker_client: TestClient) -> None:
    from backend.tables import Worker
    from tests.backend.conftest import WORKER

    app = broker_client.app
    beat = broker_client.post("/api/worker/heartbeat", json={"worker": "gpu-1", "queues": ["gpu"], "device": "cuda"},
                              headers=WORKER)
    assert beat.status_code == 200
    run_id = broker_client.post("/api/runs", json=digits_config(device="auto")).json()["id"]
    app.state.dispatcher.dispatch_pending()  # type: ignore[attr-defined]
    assert broker_client.get(f"/api/runs/{run_id}").json()["queue"] == "gpu"
    with app.state.db.writing() as session:  # type: ignore[attr-defined]
        session.get(Run, run_id).dispatched_at = utcnow() - timedelta(hours=1)
    app.state.dispatcher.tick()  # type: ignore[attr-defined]
    assert _queued_messages(broker_client, "cpu") == []  # the GPU worker is still online: the run waits for it
    with app.state.db.writing() as session:  # type: ignore[attr-defined]
        session.get(Worker, "gpu-1").last_heartbeat = utcnow() - timedelta(hours=1)
    app.state.dispatcher.tick()  # type: ignore[attr-defined]
    assert len(_queued_messages(broker_client, "cpu")) == 1
    assert broker_client.get(f"/api/runs/{run_id}").json()["queue"] == "cpu"


def test_a_run_sent_before_the_api_started_is_sent_again_at_once_when_its_queue_is_empty(
        api_settings: Settings, redis_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    # `prunescope up` restarts its Redis empty: a run handed back at Ctrl-C waited PRUNESCOPE_REDISPATCH_SECONDS
    # (two minutes) after the next start before any worker got it.
    url, _ = redis_server
    settings = api_settings.model_copy(update={"redis_url": url})
    with TestClient(create_app(settings, start_dispatcher=False)) as first:
        run_id = first.post("/api/runs", json=digits_config(device="cpu")).json()["id"]
        first.app.state.dispatcher.dispatch_pending()  # type: ignore[attr-defined]
    redis.Redis.from_url(url).flushall()  # the embedded broker comes back empty
    with TestClient(create_app(settings, start_dispatcher=False)) as second:
        assert _queued_messages(second, "cpu") == []
        second.app.state.dispatcher.tick()  # type: ignore[attr-defined]
        assert len(_queued_messages(second, "cpu")) == 1
        assert second.get(f"/api/runs/{run_id}").json()["status"] == "queued"
