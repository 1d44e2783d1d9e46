"""The Celery side: the task is registered under the queue contract's name, runs a session, and shutdown hands back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from prunescope.contract import WorkerOutcome
from prunescope.contract.queue import TRAIN_TASK
from worker import tasks
from worker.heartbeat import SHUTDOWN, ActiveRun, WorkerState


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerState]:
    fresh = WorkerState()
    monkeypatch.setattr(tasks, "STATE", fresh)
    yield fresh


def test_the_train_task_is_registered_json_only() -> None:
    assert TRAIN_TASK in tasks.app.tasks
    assert tasks.app.conf.task_serializer == "json" and tasks.app.conf.accept_content == ["json"]


def test_the_task_runs_one_session_and_returns_its_outcome(monkeypatch: pytest.MonkeyPatch,
                                                           state: WorkerState) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_execute(run_id: int, settings: Any, identity: Any, worker_state: WorkerState,
                     api: Any) -> WorkerOutcome:
        calls.append((run_id, worker_state, api))
        return WorkerOutcome.REQUEUE

    monkeypatch.setattr(tasks, "execute_run", fake_execute)
    monkeypatch.setattr(tasks, "_api", None)
    assert tasks.app.tasks[TRAIN_TASK].run("7") == "requeue"  # ids arrive as JSON: coerced to int
    assert tasks.app.tasks[TRAIN_TASK].run(8) == "requeue"
    assert [c[:2] for c in calls] == [(7, state), (8, state)]
    # Runs share the process's one API client (and its connection); none is made per run.
    assert calls[0][2] is calls[1][2] is tasks.worker_api()
    assert not calls[0][2].http.is_closed


def test_worker_shutdown_stops_the_held_run_to_hand_it_back(state: WorkerState) -> None:
    active = ActiveRun(run_id=3, lease="L", attempt=1)
    state.hold(active)
    signals.worker_shutting_down.send(sender="test", sig="SIGTERM", how="Warm", exitcode=0)
    assert active.stop.is_set() and active.stop_reason == SHUTDOWN
    late = ActiveRun(run_id=4, lease="M", attempt=1)
    state.hold(late)  # a run claimed while shutting down stops at once too
    assert late.stop.is_set() and late.stop_reason == SHUTDOWN


def test_a_413_names_the_setting_that_limits_uploads() -> None:
    # A 580 MB model.pt trained to the end, then failed with "HTTP 413: Content Too Large" and no hint.
    from worker.api_client import ApiRefused

    assert "raise PRUNESCOPE_MAX_REPORT_BYTES where the API runs" in str(ApiRefused(413, "Content Too Large"))
    assert "PRUNESCOPE" not in str(ApiRefused(422, "bad"))
