"""Faults around the broker and load: Redis killed with runs inside it and runs submitted while it is gone;
200 concurrent submissions, then all of them cancelled.

Every case asserts the final status, the epochs recorded (1..k once each), every mask decoding, and no 5xx.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.faults.conftest import FaultStack, quick_run

pytestmark = pytest.mark.integration


def test_redis_killed_with_runs_inside_it_and_runs_submitted_meanwhile_all_complete(faults: FaultStack) -> None:
    faults.env["PRUNESCOPE_REDISPATCH_SECONDS"] = "3"  # restarted before the API: it sees the short interval
    faults.stop_api()
    faults.start_api()
    inside = [faults.submit(quick_run(6)) for _ in range(3)]  # no worker yet: their messages wait in Redis
    faults.wait_for(lambda: all(faults.run(r)["queue"] for r in inside), 30, "the runs to reach Redis")
    assert faults.redis is not None
    faults.kill(faults.redis)  # no persistence: the messages are gone with it
    faults.redis = None
    meanwhile = [faults.submit(quick_run(6)) for _ in range(2)]  # committed, waiting for the broker
    assert all(faults.run(r)["status"] == "queued" for r in meanwhile)
    faults.start_redis()  # empty: the API must notice the lost messages and send them again
    faults.start_worker()
    for run_id in inside + meanwhile:
        run = faults.assert_intact(run_id, epochs=6)
        assert run["attempts"] == 1, run


def test_two_hundred_submissions_are_stored_once_and_all_cancel(faults: FaultStack) -> None:
    faults.start_worker()
    config = quick_run(40)

    def submit(i: int) -> httpx.Response:
        with httpx.Client(base_url=faults.api_url, timeout=60) as http:
            return http.post("/api/runs", json={**config, "name": f"load-{i}"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(submit, range(200)))
    assert [a.status_code for a in answers] == [201] * 200
    ids = sorted(a.json()["id"] for a in answers)
    assert len(set(ids)) == 200
    listed = faults.http.get("/api/runs", params={"limit": 200, "q": "load-"}).json()
    assert listed["total"] == 200
    faults.wait_for(lambda: any(faults.run(r)["status"] == "running" for r in ids), 60, "one run to start")

    def cancel(run_id: int) -> int:
        with httpx.Client(base_url=faults.api_url, timeout=60) as http:
            return http.post(f"/api/runs/{run_id}/cancel").status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(cancel, ids))
    assert all(code < 300 for code in codes), sorted(set(codes))
    for run_id in ids:
        run = faults.wait_status(run_id, ("completed", "failed", "cancelled"), timeout=120)
        assert run["status"] == "cancelled", run
        recorded = [e["epoch"] for e in faults.epochs(run_id)]
        assert recorded == list(range(1, len(recorded) + 1))
    started = [r for r in ids if faults.epochs(r)]
    assert len(started) <= 2  # the worker took at most the run it was training (and none after the cancel)
    for run_id in started:
        layers = faults.http.get(f"/api/runs/{run_id}/masks").json()["layers"]
        for layer in layers:
            for epoch in layer["epochs"]:
                grid = faults.http.get(f"/api/runs/{run_id}/masks/{layer['name']}", params={"epoch": epoch})
                assert grid.status_code == 200, grid.text
    assert [a for a in faults.answers() if a[2] >= 500] == []
