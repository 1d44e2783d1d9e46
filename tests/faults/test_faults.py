"""Faults in real processes: killed, stopped and frozen workers, a killed API, artifact storage gone for a while.

Every case asserts the final status, epochs exactly 1..N once each, every mask decoding, and no 500.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from tests.faults.conftest import EPOCHS, HEARTBEAT_TIMEOUT, FaultStack, quick_run

pytestmark = pytest.mark.integration


def rerun_epochs(epochs: list[dict[str, object]], recorded_before: int) -> int:
    """Epochs the first attempt had recorded that a later attempt trained again."""
    return sum(1 for e in epochs if int(e["epoch"]) <= recorded_before and e["attempt"] != 1)  # type: ignore[call-overload]


def test_killed_worker_run_resumes_from_checkpoint_re_running_at_most_one_epoch(faults: FaultStack) -> None:
    first = faults.start_worker()
    run_id = faults.submit(quick_run())
    faults.wait_for(lambda: faults.run(run_id)["epochs_done"] >= 4, 120, "4 epochs")
    faults.kill(first)
    recorded = faults.run(run_id)["epochs_done"]
    faults.start_worker()
    run = faults.assert_intact(run_id)
    assert run["attempts"] == 2
    epochs = faults.epochs(run_id)
    rerun = rerun_epochs(epochs, recorded)
    print(f"\nSIGKILL after {recorded} recorded epochs: attempt 2 re-ran {rerun} of them")
    assert rerun <= 1
    assert {e["attempt"] for e in epochs} == {1, 2}


def test_stopped_worker_hands_back_and_the_next_attempt_trains_no_epoch_again(faults: FaultStack) -> None:
    first = faults.start_worker()
    run_id = faults.submit(quick_run())
    faults.wait_for(lambda: faults.run(run_id)["epochs_done"] >= 4, 120, "4 epochs")
    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    print(f"\nSIGTERM to exit: {time.monotonic() - started:.1f} s")
    handed_back = faults.run(run_id)
    assert handed_back["status"] == "queued" and handed_back["attempts"] == 1
    faults.start_worker()
    run = faults.assert_intact(run_id)
    assert run["attempts"] == 2
    epochs = faults.epochs(run_id)
    assert rerun_epochs(epochs, handed_back["epochs_done"]) == 0
    assert [e["epoch"] for e in epochs if e["attempt"] == 1] == list(range(1, handed_back["epochs_done"] + 1))


def test_a_frozen_worker_loses_its_run_and_its_stale_reports_and_uploads_are_refused(faults: FaultStack) -> None:
    zombie = faults.start_worker()
    run_id = faults.submit(quick_run())
    faults.wait_for(lambda: faults.run(run_id)["epochs_done"] >= 3, 120, "3 epochs")
    zombie.send_signal(signal.SIGSTOP)
    try:
        faults.start_worker()
        faults.wait_for(lambda: faults.run(run_id)["attempts"] == 2 and faults.run(run_id)["status"] == "running",
                        60, "another worker to take the run over")
    finally:
        zombie.send_signal(signal.SIGCONT)
    run = faults.assert_intact(run_id)
    assert run["attempts"] == 2
    # The zombie woke up holding a superseded lease: what it tried for the run was refused.
    stale = [a for a in faults.answers() if a[2] == 409 and (f"/runs/{run_id}/" in a[1] or "heartbeat" in a[1])]
    assert stale, faults.log("api.log")
    assert zombie.poll() is None  # it neither hung nor died: it let the run go and waits for the next one
    epochs = faults.epochs(run_id)
    first_attempt = [e["epoch"] for e in epochs if e["attempt"] == 1]
    assert first_attempt == list(range(1, len(first_attempt) + 1))  # nothing of attempt 1 after attempt 2's start


def test_killed_and_restarted_api_loses_no_epoch(faults: FaultStack) -> None:
    faults.start_worker()
    run_id = faults.submit(quick_run())
    faults.wait_for(lambda: faults.run(run_id)["epochs_done"] >= 3, 120, "3 epochs")
    assert faults.api is not None
    faults.kill(faults.api)
    faults.api = None
    time.sleep(HEARTBEAT_TIMEOUT + 1)  # the worker trains on and buffers its reports
    faults.start_api()
    run = faults.assert_intact(run_id)
    assert run["attempts"] == 1


def test_artifact_storage_gone_for_a_while_delays_uploads_but_loses_nothing(faults: FaultStack) -> None:
    faults.start_worker()
    run_id = faults.submit(quick_run())
    faults.wait_for(lambda: faults.run(run_id)["epochs_done"] >= 2, 120, "2 epochs")
    aside = faults.tmp / "api-artifacts-aside"
    shutil.move(str(faults.api_artifacts), str(aside))
    faults.api_artifacts.write_text("not a directory")  # tests run as root: chmod would not stop the API
    time.sleep(HEARTBEAT_TIMEOUT + 2)  # longer than the heartbeat timeout: the run must not be requeued
    faults.api_artifacts.unlink()
    shutil.move(str(aside), str(faults.api_artifacts))
    run = faults.assert_intact(run_id, allowed_5xx=frozenset({503}))
    assert run["attempts"] == 1
    refused_uploads = [a for a in faults.answers() if a[2] == 503 and "/artifacts/" in a[1]]
    assert refused_uploads, "the uploads met the missing storage"
    assert faults.http.get(f"/api/runs/{run_id}/model").status_code == 200
    assert not (faults.api_artifacts / "runs" / str(run_id) / "checkpoint.pt").exists()
    assert not any((faults.tmp / "home" / "artifacts" / "worker").glob("*/run-*"))  # the worker's spool is gone
    assert len(faults.epochs(run_id)) == EPOCHS
