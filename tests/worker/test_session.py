"""A run session against the real API in-process: leases, hand-back with resume, superseded attempts, failures."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prunescope import maskcodec
from prunescope.contract import EpochRecord, LayerStats, RunConfig, RunSummary, WorkerOutcome
from tests.worker.conftest import Harness
from worker.engine.checkpoint_slot import CheckpointSlot
from worker.runner import RunSession, Trainer

MASK_SHAPE = (4, 6)


class FakeTrainer:
    """Trains nothing, but keeps the engine's promises: a record and masks per epoch, the checkpoint of
    epoch N kept in the slot after `on_epoch(N)`, resume from the checkpoint at `checkpoint_path`, the model
    beside it at the end."""

    def __init__(self, during: Callable[[int], None] = lambda epoch: None) -> None:
        self.during = during
        self.calls: list[dict[str, Any]] = []

    def __call__(self, config: RunConfig, *, data_dir: Path, device: str,
                 on_epoch: Callable[[EpochRecord, dict[str, np.ndarray]], None], should_stop: Callable[[], bool],
                 checkpoint_path: Path, resume: bool, checkpoint_slot: CheckpointSlot) -> RunSummary:
        first = int(checkpoint_path.read_text()) + 1 if resume else 1
        self.calls.append({"resume": resume, "first": first, "device": device})
        done = first - 1
        for epoch in range(first, config.training.epochs + 1):
            self.during(epoch)
            if should_stop():
                return RunSummary(epochs_done=done, stopped=True)
            mask = np.random.default_rng(epoch).random(MASK_SHAPE) < 0.5
            record = EpochRecord(epoch=epoch, train_loss=1.0 / epoch, test_acc=0.5, sparsity=0.5,
                                 layers=[LayerStats(name="fc.weight", shape=list(MASK_SHAPE), sparsity=0.5)])
            on_epoch(record, {"fc.weight": mask})
            checkpoint_slot.keep(epoch, lambda path, epoch=epoch: path.write_text(str(epoch)))
            done = epoch
        (checkpoint_path.parent / "model.pt").write_bytes(b"model")
        return RunSummary(final_test_acc=0.5, epochs_done=done)


def session(h: Harness, run_id: int, trainer: Trainer) -> RunSession:
    return RunSession(run_id, h.settings, h.identity, h.state, h.api, trainer=lambda: trainer)


def test_a_session_reports_every_epoch_with_its_masks_and_completes(harness: Harness) -> None:
    run_id = harness.submit(epochs=3)
    s = session(harness, run_id, FakeTrainer())
    assert s.run() == WorkerOutcome.COMPLETED
    run = harness.run(run_id)
    assert run["status"] == "completed" and run["attempts"] == 1
    epochs = harness.epochs(run_id)
    assert [(e["epoch"], e["attempt"]) for e in epochs] == [(1, 1), (2, 1), (3, 1)]
    for epoch in (1, 2, 3):
        grid = harness.client.get(f"/api/runs/{run_id}/masks/fc.weight", params={"epoch": epoch}).json()
        expected = np.random.default_rng(epoch).random(MASK_SHAPE) < 0.5
        assert np.array_equal(np.array(grid["density"]) == 1.0, expected)
    assert harness.artifact(run_id, "model.pt").read_bytes() == b"model"
    assert not harness.artifact(run_id, "checkpoint.pt").exists()  # the run ended: no resume, no checkpoint
    assert not s.workdir.exists()  # the spool goes with the run
    assert harness.state.run is None


@pytest.mark.parametrize("checkpoint_seconds", [0, 3600])
def test_shutdown_hands_the_run_back_with_its_newest_checkpoint_and_the_next_claim_resumes(
        harness: Harness, checkpoint_seconds: float) -> None:
    harness.settings.checkpoint_seconds = checkpoint_seconds  # none due during the run at 3600: the hand-back's own
    run_id = harness.submit(epochs=4)

    def shut_down_in_epoch_3(epoch: int) -> None:
        if epoch == 3:
            harness.state.shut_down()

    first = FakeTrainer(during=shut_down_in_epoch_3)
    assert session(harness, run_id, first).run() == WorkerOutcome.REQUEUE
    run = harness.run(run_id)
    assert run["status"] == "queued" and run["epochs_done"] == 2
    assert harness.artifact(run_id, "checkpoint.pt").read_text() == "2"  # epoch 2's, uploaded at the hand-back

    harness.state.shutting_down = False  # another worker process
    second = FakeTrainer()
    assert session(harness, run_id, second).run() == WorkerOutcome.COMPLETED
    assert second.calls == [{"resume": True, "first": 3, "device": "cpu"}]
    assert [(e["epoch"], e["attempt"]) for e in harness.epochs(run_id)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert harness.run(run_id)["status"] == "completed"


def test_a_hand_back_before_any_epoch_ends_leaves_the_checkpoint_the_api_holds(harness: Harness) -> None:
    harness.settings.checkpoint_seconds = 3600
    run_id = harness.submit(epochs=4)

    def shut_down_in(stop_epoch: int) -> Callable[[int], None]:
        def during(epoch: int) -> None:
            if epoch == stop_epoch:
                harness.state.shut_down()
        return during

    assert session(harness, run_id, FakeTrainer(during=shut_down_in(3))).run() == WorkerOutcome.REQUEUE
    harness.state.shutting_down = False
    # The next attempt resumes at epoch 3 and is shut down in it: no epoch of its own ended, nothing to send.
    second = session(harness, run_id, FakeTrainer(during=shut_down_in(3)))
    assert second.run() == WorkerOutcome.REQUEUE
    assert second.uploads == 0
    assert harness.artifact(run_id, "checkpoint.pt").read_text() == "2"
    harness.state.shutting_down = False
    third = FakeTrainer()
    assert session(harness, run_id, third).run() == WorkerOutcome.COMPLETED
    assert third.calls == [{"resume": True, "first": 3, "device": "cpu"}]


def test_the_checkpoint_uploaded_during_a_run_is_never_ahead_of_the_recorded_epochs(harness: Harness) -> None:
    run_id = harness.submit(epochs=5)
    seen: list[tuple[int, int]] = []

    def look(epoch: int) -> None:
        s.reporter.flush(timeout=5)  # type: ignore[union-attr]
        path = harness.artifact(run_id, "checkpoint.pt")
        if path.exists():
            seen.append((int(path.read_text()), harness.run(run_id)["epochs_done"]))

    s = session(harness, run_id, FakeTrainer(during=look))
    assert s.run() == WorkerOutcome.COMPLETED
    assert seen, "a checkpoint was uploaded while the run trained"
    # Checkpoint k arrives after epoch k's report; resuming from it re-runs at most the one epoch after it.
    assert all(checkpoint <= recorded <= checkpoint + 1 for checkpoint, recorded in seen), seen


def test_checkpoints_are_uploaded_at_most_once_per_checkpoint_seconds_of_training(harness: Harness) -> None:
    harness.settings.checkpoint_seconds = 10
    clock = [1000.0]
    run_id = harness.submit(epochs=7)
    uploaded: list[tuple[int, int]] = []  # (epoch being reported, checkpoint the API holds)

    def four_seconds_an_epoch(epoch: int) -> None:
        clock[0] += 4
        s.reporter.flush(timeout=5)  # type: ignore[union-attr]
        path = harness.artifact(run_id, "checkpoint.pt")
        uploaded.append((epoch, int(path.read_text()) if path.exists() else 0))

    s = session(harness, run_id, FakeTrainer(during=four_seconds_an_epoch))
    s.clock = lambda: clock[0]
    s.checkpoint_uploaded_at = clock[0]  # claimed at t=0
    assert s.run() == WorkerOutcome.COMPLETED
    # Reports at t=4, 8, 12, ...: the checkpoint on disk (epoch N-1's) goes up at 12 s (epoch 2's) and 24 s (5's).
    assert uploaded == [(1, 0), (2, 0), (3, 0), (4, 2), (5, 2), (6, 2), (7, 5)]
    assert s.uploads == 3  # two checkpoints and the model
    assert [e["epoch"] for e in harness.epochs(run_id)] == list(range(1, 8))  # every epoch is still reported


def test_a_superseded_attempt_stops_and_sends_nothing_more(harness: Harness) -> None:
    run_id = harness.submit(epochs=6)
    new_lease: dict[str, str] = {}

    def taken_over_in_epoch_3(epoch: int) -> None:
        if epoch == 3:
            s.reporter.flush(timeout=5)  # type: ignore[union-attr]
            harness.reap(run_id)  # as if this worker had been frozen past the heartbeat timeout
            answer = harness.client.post(f"/api/worker/runs/{run_id}/start", json={"worker": "other:2"}).json()
            new_lease["lease"] = answer["lease"]

    s = session(harness, run_id, FakeTrainer(during=taken_over_in_epoch_3))
    assert s.run() == WorkerOutcome.SKIPPED
    run = harness.run(run_id)
    assert run["status"] == "running" and run["attempts"] == 2 and run["worker"] == "other:2"
    assert [e["epoch"] for e in harness.epochs(run_id)] == [1, 2]  # epoch 3 of the stale attempt: refused
    assert not harness.artifact(run_id, "model.pt").exists()
    assert not s.workdir.exists()
    assert new_lease["lease"] != s.active.lease  # type: ignore[union-attr]


def test_a_report_the_api_refuses_ends_the_run_failed_with_the_reason(harness: Harness) -> None:
    run_id = harness.submit(epochs=2)

    class TooManyEpochs(FakeTrainer):
        def __call__(self, config: RunConfig, **kwargs: Any) -> RunSummary:
            return super().__call__(config.model_copy(update={"training": config.training.model_copy(
                update={"epochs": 4})}), **kwargs)

    s = session(harness, run_id, TooManyEpochs())
    assert s.run() == WorkerOutcome.FAILED
    run = harness.run(run_id)
    assert run["status"] == "failed"
    # The fake's epochs end at once, so epoch 3 goes with the reports that waited beside it (all or none); the
    # error names the request's epochs and the API's reason.
    assert re.search(r"epochs? [1-3](-4)? reports?: HTTP 422", run["error"]), run["error"]
    assert "epoch 3 is past the run's 2 epochs" in run["error"], run["error"]
    assert not s.workdir.exists()


def test_last_reports_the_api_refuses_in_the_finish_end_the_run_failed_with_the_reason(harness: Harness) -> None:
    harness.settings.report_interval = 3600  # epoch 1 goes alone; 2-4 wait and go in the finish
    harness.settings.checkpoint_seconds = 3600
    run_id = harness.submit(epochs=2)

    class TooManyEpochs(FakeTrainer):
        def __call__(self, config: RunConfig, **kwargs: Any) -> RunSummary:
            return super().__call__(config.model_copy(update={"training": config.training.model_copy(
                update={"epochs": 4})}), **kwargs)

    s = session(harness, run_id, TooManyEpochs(during=lambda epoch: time.sleep(0.03)))
    assert s.run() == WorkerOutcome.FAILED
    run = harness.run(run_id)
    assert run["status"] == "failed"
    assert "reports to the API stopped: epochs 2-4 reports: HTTP 422" in run["error"], run["error"]
    assert "epoch 3 is past the run's 2 epochs" in run["error"], run["error"]
    assert [e["epoch"] for e in harness.epochs(run_id)] == [1]  # the finish's reports: all or none


def test_a_run_cancelled_through_the_api_ends_cancelled(harness: Harness) -> None:
    run_id = harness.submit(epochs=50)

    def cancel_in_epoch_2(epoch: int) -> None:
        # The cancel reaches the worker in the answer to the next report; each epoch from 2 on waits for the
        # reports before it, so the fake (which trains no time at all) cannot finish 50 epochs before that answer.
        if epoch == 2:
            harness.client.post(f"/api/runs/{run_id}/cancel")
        if epoch >= 2:
            assert s.reporter.flush(timeout=5)  # type: ignore[union-attr]

    s = session(harness, run_id, FakeTrainer(during=cancel_in_epoch_2))
    assert s.run() == WorkerOutcome.CANCELLED
    assert harness.run(run_id)["status"] == "cancelled"
    assert harness.run(run_id)["epochs_done"] <= 3  # stopped at the first epoch after the answer, not at the end
    assert not s.workdir.exists()


def test_a_run_that_is_not_ours_to_start_is_skipped(harness: Harness) -> None:
    run_id = harness.submit()
    harness.client.post(f"/api/runs/{run_id}/cancel")
    trainer = FakeTrainer()
    assert session(harness, run_id, trainer).run() == WorkerOutcome.SKIPPED
    assert trainer.calls == []


def test_the_spool_of_each_worker_process_is_its_own(harness: Harness) -> None:
    run_id = harness.submit()
    s = session(harness, run_id, FakeTrainer())
    assert s.workdir.parent.name == harness.identity.spool_name
    assert s.workdir.is_relative_to(harness.settings.resolved_artifact_dir / "worker")


def test_mask_stream_uses_deltas_between_key_frames() -> None:
    from prunescope.maskcodec import MaskEncoder

    encoder = MaskEncoder()
    mask = np.ones((3, 3), dtype=bool)
    kinds = [encoder.encode(epoch, {"w": mask})["w"]["encoding"] for epoch in range(1, maskcodec.KEYFRAME_EVERY + 3)]
    assert kinds[0] == "key" and kinds[1] == "delta" and kinds[maskcodec.KEYFRAME_EVERY] == "key"


def carries_epochs(path: str, request: dict[str, Any]) -> bool:
    """A finish with epoch reports in it."""
    content = request.get("content")
    return path.endswith("/finish") and isinstance(content, str) and '"epochs"' in content


def test_epochs_that_end_within_the_report_interval_go_together_and_the_end_does_not_wait(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.settings.report_interval = 3600  # an hour: only the run's end sends what waits
    harness.settings.checkpoint_seconds = 3600  # no upload during the run (one would close the report group)
    run_id = harness.submit(epochs=10)
    posts: list[str] = []
    request = harness.api.request

    def counted(method: str, path: str, **kwargs: Any) -> Any:
        posts.append(path.rsplit("/", 1)[-1] + (" with epochs" if carries_epochs(path, kwargs) else ""))
        return request(method, path, **kwargs)

    monkeypatch.setattr(harness.api, "request", counted)
    # Epochs 30 ms apart: far longer than an in-process report takes, so without the interval each would go alone.
    s = session(harness, run_id, FakeTrainer(during=lambda epoch: time.sleep(0.03)))
    assert s.run() == WorkerOutcome.COMPLETED
    # Epoch 1 goes at once (nothing was sent before it); the rest wait for the interval, cut short by the end,
    # and go in the finish: the end of the run is one request.
    assert posts == ["start", "epochs", "model.pt", "finish with epochs"], posts
    assert [e["epoch"] for e in harness.epochs(run_id)] == list(range(1, 11))
    for epoch in (1, 2, 10):  # deltas chained through the batch decode to the trainer's masks
        grid = harness.client.get(f"/api/runs/{run_id}/masks/fc.weight", params={"epoch": epoch}).json()
        expected = np.random.default_rng(epoch).random(MASK_SHAPE) < 0.5
        assert np.array_equal(np.array(grid["density"]) == 1.0, expected)


def test_an_api_older_than_epochs_in_a_finish_gets_them_as_a_batch_first(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.api_client import ApiRefused

    harness.settings.report_interval = 3600
    harness.settings.checkpoint_seconds = 3600
    run_id = harness.submit(epochs=4)
    posts: list[str] = []
    request = harness.api.request

    def older_api(method: str, path: str, **kwargs: Any) -> Any:
        with_epochs = carries_epochs(path, kwargs)
        posts.append(path.rsplit("/", 1)[-1] + (" with epochs" if with_epochs else ""))
        if path.endswith("/finish") and with_epochs:  # what the API before this field answers (seen)
            raise ApiRefused(422, '{"detail":[{"loc":["body","epochs"],"msg":"Extra inputs are not permitted",'
                                  '"type":"extra_forbidden"}]}')
        return request(method, path, **kwargs)

    monkeypatch.setattr(harness.api, "request", older_api)
    assert session(harness, run_id, FakeTrainer(during=lambda epoch: time.sleep(0.03))).run() == WorkerOutcome.COMPLETED
    assert posts == ["start", "epochs", "model.pt", "finish with epochs", "batch", "finish"], posts
    assert [e["epoch"] for e in harness.epochs(run_id)] == [1, 2, 3, 4]
    assert harness.run(run_id)["status"] == "completed"
    posts.clear()
    run_id = harness.submit(epochs=4)
    assert session(harness, run_id, FakeTrainer(during=lambda epoch: time.sleep(0.03))).run() == WorkerOutcome.COMPLETED
    assert posts == ["start", "epochs", "model.pt", "batch", "finish"], posts  # learnt: no refused finish again


def test_report_groups_are_bounded_in_count_and_mask_bytes_and_end_when_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from prunescope.contract.worker_api import MAX_REPORT_BATCH, EpochReport
    from worker.runner import ReportBatch

    def report(epoch: int, size: int = 0) -> EpochReport:
        masks = {"w": {"shape": [1], "encoding": "key", "data": "A" * size}} if size else {}
        return EpochReport(worker="w", epoch=epoch, masks=masks)

    batch = ReportBatch()
    group = batch.add(report(1))
    assert group is not None  # the first opens a group: its delivery must be queued
    assert all(batch.add(report(e)) is None for e in range(2, MAX_REPORT_BATCH + 3))  # the rest join it
    assert batch.is_open(group)
    assert [len(chunk) for chunk in batch.take(group)] == [MAX_REPORT_BATCH, 2]
    assert not batch.is_open(group) and batch.add(report(1)) is not None  # taken: the next report opens another
    batch.close()  # an upload queued: the next report opens a group delivered after it
    later = batch.add(report(2))
    assert later is not None and [[r.epoch for r in c] for c in batch.take(later)] == [[2]]
    monkeypatch.setattr(ReportBatch, "MAX_MASK_BYTES", 100)
    sized = batch.add(report(1, 60))
    assert sized is not None
    for epoch, size in enumerate([30, 20, 150, 10], start=2):
        batch.add(report(epoch, size))
    assert [[r.epoch for r in c] for c in batch.take(sized)] == [[1, 2], [3], [4], [5]]  # an oversized one alone


def test_checkpoints_every_epoch_stay_within_an_epoch_of_the_records_with_a_long_report_interval(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkpoint upload closes the open report group: the reports after it wait behind it, and the group before
    # it goes without waiting out the interval. Otherwise uploads would queue behind a group that keeps lingering
    # and a crash would re-train every epoch since the last one that got through.
    harness.settings.report_interval = 3600
    harness.settings.checkpoint_seconds = 0
    run_id = harness.submit(epochs=8)
    seen: list[tuple[int, int]] = []  # (checkpoint uploaded, epochs recorded when it arrived)
    upload = harness.api.upload

    def watched(run: int, lease: str, name: str, file: Path, **kwargs: Any) -> None:
        upload(run, lease, name, file, **kwargs)  # type: ignore[arg-type]
        if name == "checkpoint.pt":
            held = int(harness.artifact(run_id, "checkpoint.pt").read_text())
            seen.append((held, harness.run(run_id)["epochs_done"]))

    monkeypatch.setattr(harness.api, "upload", watched)
    s = session(harness, run_id, FakeTrainer(during=lambda epoch: time.sleep(0.03)))
    assert s.run() == WorkerOutcome.COMPLETED
    assert len(seen) >= 4, seen  # uploaded while the run trained, not held behind a report group until its end
    assert all(checkpoint <= recorded <= checkpoint + 1 for checkpoint, recorded in seen), seen
    assert [e["epoch"] for e in harness.epochs(run_id)] == list(range(1, 9))


@pytest.mark.parametrize("bad", ["-0.1", "61", "soon"])
def test_a_report_interval_outside_0_to_60_seconds_is_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    from pydantic import ValidationError

    from prunescope.config import Settings

    monkeypatch.setenv("PRUNESCOPE_REPORT_INTERVAL", bad)
    with pytest.raises(ValidationError, match="report_interval"):
        Settings()
    monkeypatch.setenv("PRUNESCOPE_REPORT_INTERVAL", "0")
    assert Settings().report_interval == 0


def test_an_exception_whose_message_holds_nul_ends_the_run_failed_with_its_text(harness: Harness) -> None:
    # The finish carried the NUL; the API stored it (PostgreSQL cannot), and now refuses it, with the finish.
    run_id = harness.submit(epochs=2)

    def explode(epoch: int) -> None:
        raise ValueError("bad byte \x00 and \ud800 in a plugin's message")

    assert session(harness, run_id, FakeTrainer(during=explode)).run() == WorkerOutcome.FAILED
    run = harness.run(run_id)
    assert run["status"] == "failed"
    assert "ValueError: bad byte \\x00 and ? in a plugin's message" in run["error"]
    body = {"worker": "w", "status": "failed", "error": "a\x00b"}
    refused = harness.client.post(f"/api/worker/runs/{run_id}/finish", json=body,
                                  headers={"Authorization": "Bearer worker-secret"})
    assert refused.status_code == 422
