"""A run spooled offline and uploaded later by `prunescope sync` keeps when it ran, not when it was uploaded."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import prunescope
from prunescope.sdk.spool import sync
from tests.sdk.conftest import TOKEN, LiveApi


def when(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_a_synced_run_keeps_its_scripts_start_and_end(api: LiveApi, dead_api: str, tmp_path: Path) -> None:
    # It was created, started and finished within the upload: a 0.07-s run, listed as made at the sync.
    began = datetime.now(UTC)
    run = prunescope.init(name="synced-times", api=dead_api, token=TOKEN, dir=tmp_path)
    run.log(epoch=1, train_loss=0.5)
    time.sleep(1.2)
    run.log(epoch=2, train_loss=0.4)
    run.finish()
    ended = datetime.now(UTC)
    time.sleep(1.5)
    uploaded = datetime.now(UTC)
    [result] = sync(tmp_path, api.url, TOKEN)
    assert result.error is None and result.run_id is not None
    with api.http() as http:
        detail = http.get(f"/api/runs/{result.run_id}").json()
    started, finished = when(detail["started_at"]), when(detail["finished_at"])
    assert began - timedelta(seconds=1) <= started <= began + timedelta(seconds=1)
    assert when(detail["created_at"]) == started
    assert started + timedelta(seconds=1.1) <= finished <= ended + timedelta(seconds=0.5)
    assert finished < uploaded


def test_a_run_seen_online_is_stamped_by_the_api(api: LiveApi, tmp_path: Path) -> None:
    with prunescope.init(name="online-times", api=api.url, token=TOKEN, dir=tmp_path) as run:
        run.log(epoch=1, train_loss=0.5)
    with api.http() as http:
        detail = http.get(f"/api/runs/{run.id}").json()
    assert detail["status"] == "completed"
    assert when(detail["started_at"]) <= when(detail["finished_at"])


def test_script_times_before_2000_or_ahead_of_the_server_are_refused(api: LiveApi) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with api.http() as http:
        for stamp in ("1999-12-31T23:59:00+00:00", ahead):
            body = {"name": "bad-time", "lease": "t" * 43, "started_at": stamp}
            answer = http.post("/api/tracked-runs", json=body)
            assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == "started_at", answer.text
        made = http.post("/api/tracked-runs", json={"name": "good-time", "lease": "g" * 43,
                                                     "started_at": "2026-01-02T03:04:05"})
        assert made.status_code == 201
        assert http.get(f"/api/runs/{made.json()['id']}").json()["started_at"].startswith("2026-01-02T03:04:05")
