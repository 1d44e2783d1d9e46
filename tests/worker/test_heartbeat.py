"""The heartbeat keeps a live worker's run alive through slow data loading; a silent worker loses it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from prunescope.contract import WorkerOutcome
from tests.worker.conftest import Harness
from worker.heartbeat import ActiveRun, Heartbeat
from worker.runner import RunSession

HEARTBEAT_TIMEOUT = 3.0
LOADING_SECONDS = 5.0  # longer than the timeout


def busy_python(seconds: float) -> None:
    """Work that holds the interpreter in pure Python (the worst case for a heartbeat thread)."""
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        total += sum(i * i for i in range(1000))


@pytest.mark.parametrize("beating", [True, False])
def test_a_run_whose_data_loads_longer_than_the_heartbeat_timeout_is_not_requeued(
        harness: Harness, monkeypatch: pytest.MonkeyPatch, beating: bool) -> None:
    from worker.engine import training

    original = training.load_dataset

    def slow_load(*args: Any, **kwargs: Any) -> Any:
        busy_python(LOADING_SECONDS)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "load_dataset", slow_load)
    app: Any = harness.client.app
    api_settings = app.state.settings.model_copy(update={"heartbeat_timeout": HEARTBEAT_TIMEOUT})
    app.state.settings = app.state.dispatcher.settings = api_settings
    app.state.dispatcher.started_at -= timedelta(hours=1)
    worker_settings = harness.settings.model_copy(update={"heartbeat_seconds": 0.5})
    run_id = harness.submit(epochs=2, dataset={"name": "digits", "limit": 200}, device="cpu")

    done = threading.Event()

    def reaper() -> None:  # the API's dispatcher, ticking
        while not done.is_set():
            app.state.dispatcher.reap_silent_runs()
            done.wait(0.3)

    threading.Thread(target=reaper, daemon=True).start()
    heartbeat = Heartbeat(worker_settings, harness.identity, harness.state, api=harness.api)
    if beating:
        heartbeat.start()
    try:
        outcome = RunSession(run_id, worker_settings, harness.identity, harness.state, harness.api).run()
    finally:
        done.set()
        if beating:
            heartbeat.stop()
    run = harness.run(run_id)
    if beating:
        assert outcome == WorkerOutcome.COMPLETED, run
        assert run["status"] == "completed" and run["attempts"] == 1
    else:  # the control: without beats the same run is taken away, and the worker lets it go
        assert outcome == WorkerOutcome.SKIPPED
        assert run["status"] == "queued" and run["epochs_done"] == 0


def test_a_beat_names_the_run_with_its_lease_and_lets_it_go_on_409(harness: Harness) -> None:
    run_id = harness.submit()
    answer = harness.client.post(f"/api/worker/runs/{run_id}/start", json={"worker": harness.identity.name}).json()
    active = ActiveRun(run_id, answer["lease"], answer["attempt"])
    harness.state.hold(active)
    beat = Heartbeat(harness.settings, harness.identity, harness.state, api=harness.api)
    beat.beat()
    assert harness.client.get("/api/workers").json()["items"][0]["current_run_id"] == run_id
    harness.reap(run_id)
    second = harness.client.post(f"/api/worker/runs/{run_id}/start", json={"worker": "other:2"}).json()
    beat.beat()  # still holding the first attempt's lease
    assert active.superseded and active.stop.is_set()
    beat.beat()  # the next beat no longer names the run, and registers the worker again
    assert harness.client.get("/api/workers").json()["items"][0]["current_run_id"] is None
    # The holder of the current lease hears of a cancel in its beat's answer.
    current = ActiveRun(run_id, second["lease"], second["attempt"])
    harness.state.hold(current)
    harness.client.post(f"/api/runs/{run_id}/cancel")
    beat.beat()
    assert current.stop.is_set() and current.stop_reason == "cancel requested" and not current.superseded


class CountingApi:
    """Stands in for the worker API: counts beats and what each named."""

    def __init__(self) -> None:
        self.named: list[int | None] = []

    def heartbeat(self, beat: Any, lease: str | None) -> Any:
        from prunescope.contract.worker_api import ReportAck

        self.named.append(beat.run_id)
        return ReportAck(cancel=False)


def test_short_runs_held_and_released_in_a_row_cost_no_extra_beats_and_a_new_run_is_named_soon(
        harness: Harness) -> None:
    api = CountingApi()
    settings = harness.settings.model_copy(update={"heartbeat_seconds": 30.0})  # idle: one beat, then a long wait
    beat = Heartbeat(settings, harness.identity, harness.state, api=api)  # type: ignore[arg-type]
    beat.start()
    try:
        deadline = time.monotonic() + 10
        while not api.named and time.monotonic() < deadline:
            time.sleep(0.01)
        assert api.named == [None]  # the first beat registers the idle worker
        for run_id in range(1, 21):  # twenty short runs, one after another (0.8 s in all)
            harness.state.hold(ActiveRun(run_id, "lease", 1))
            time.sleep(0.02)
            harness.state.release()
            time.sleep(0.02)
        assert len(api.named) <= 3, api.named  # one a second at most, not two per run
        harness.state.hold(ActiveRun(99, "lease", 1))
        while 99 not in api.named and time.monotonic() < deadline:  # named within the busy interval, not 30 s
            time.sleep(0.01)
        assert 99 in api.named
    finally:
        harness.state.release()
        beat.stop()
