"""What worker reports do to the database: start, record an epoch with its masks, finish, heartbeat."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from backend.events import record_event
from backend.maskviews.service import MaskNotFound, mask_at
from backend.reports.schemas import EpochReport, FinishReport, Heartbeat, ReportAck, StartResponse
from backend.runs import service as runs
from backend.tables import Epoch, MaskSnapshot, Run, Worker, utcnow
from prunescope import maskcodec


class ReportRejected(Exception):
    """The report cannot be applied (HTTP 409 for state, 422 for content)."""

    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message)
        self.status_code = status_code


def start_run(session: Session, run: Run, worker: str, *, heartbeat_timeout: float,
              has_checkpoint: bool) -> StartResponse:
    """A worker picked up the run's task: claim the run unless it was cancelled, finished or is alive elsewhere."""
    if run.status in ("completed", "failed", "cancelled"):
        return StartResponse(proceed=False, reason=f"run is {run.status}")
    if run.cancel_requested:
        runs.set_status(session, run, "cancelled", reason="cancelled before it restarted")
        return StartResponse(proceed=False, reason="run was cancelled")
    if run.status == "running" and run.worker != worker:
        fresh = run.last_heartbeat_at and utcnow() - run.last_heartbeat_at < timedelta(seconds=heartbeat_timeout)
        if fresh:
            return StartResponse(proceed=False, reason=f"run is running on {run.worker}")
    run.attempts += 1
    run.worker = worker
    run.last_heartbeat_at = utcnow()
    run.error = None
    resume = has_checkpoint and run.attempts > 1
    runs.set_status(session, run, "running", reason=f"attempt {run.attempts}" + (" (resuming)" if resume else ""))
    return StartResponse(proceed=True, config=run.config, attempt=run.attempts, resume=resume,
                         epochs_done=run.epochs_done)


def _assigned(run: Run, worker: str) -> None:
    if run.status != "running" or run.worker != worker:
        raise ReportRejected(f"run {run.id} is {run.status} and not assigned to {worker}")


def record_epoch(session: Session, run: Run, report: EpochReport) -> ReportAck:
    """Store an epoch and its mask snapshots; a repeated epoch replaces the earlier one (idempotent)."""
    _assigned(run, report.worker)
    if report.epoch > run.epochs_total:
        raise ReportRejected(f"epoch {report.epoch} is past the run's {run.epochs_total} epochs", 422)
    snapshots = _decode_masks(session, run.id, report)
    session.execute(delete(Epoch).where(Epoch.run_id == run.id, Epoch.epoch == report.epoch))
    session.execute(delete(MaskSnapshot).where(MaskSnapshot.run_id == run.id, MaskSnapshot.epoch == report.epoch))
    record = report.model_dump(exclude={"worker", "masks"})
    session.add(Epoch(run_id=run.id, **record))
    session.add_all(snapshots)
    if report.epoch >= run.epochs_done:
        run.epochs_done = report.epoch
        run.sparsity = report.sparsity
        run.test_acc = report.test_acc
    if report.test_acc is not None and (run.best_test_acc is None or report.test_acc > run.best_test_acc):
        run.best_test_acc = report.test_acc
    run.last_heartbeat_at = utcnow()
    record_event(session, run.id, "epoch", record)
    return ReportAck(cancel=run.cancel_requested, reason="cancel requested" if run.cancel_requested else None)


def _decode_masks(session: Session, run_id: int, report: EpochReport) -> list[MaskSnapshot]:
    """Decode every snapshot (a delta against the stored previous epoch) before anything is written."""
    out = []
    for layer, payload in report.masks.items():
        if not 0 < len(layer) <= 200:
            raise ReportRejected("mask layer names are 1 to 200 characters", 422)
        try:
            data = base64.b64decode(payload.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ReportRejected(f"mask {layer!r}: data is not base64", 422) from exc
        encoded = maskcodec.EncodedMask(tuple(payload.shape), payload.encoding, data)
        previous = None
        if payload.encoding == maskcodec.DELTA:
            try:
                previous = mask_at(session, run_id, layer, report.epoch - 1)
            except MaskNotFound as exc:
                raise ReportRejected(f"mask {layer!r}: a delta needs epoch {report.epoch - 1} stored first", 422) \
                    from exc
        try:
            maskcodec.decode(encoded, previous)
        except maskcodec.MaskDecodeError as exc:
            raise ReportRejected(f"mask {layer!r}: {exc}", 422) from exc
        out.append(MaskSnapshot(run_id=run_id, layer=layer, epoch=report.epoch, shape=list(payload.shape),
                                encoding=payload.encoding, data=data, nbytes=len(data)))
    return out


def finish_run(session: Session, run: Run, report: FinishReport) -> None:
    _assigned(run, report.worker)
    if report.status == "requeue":
        run.dispatched, run.worker = False, None
        run.attempts = max(0, run.attempts - 1)  # a clean hand-back is not a failed attempt
        runs.set_status(session, run, "queued", reason=f"worker {report.worker} shut down; requeued to resume")
        return
    if report.summary is not None:
        summary = report.summary.model_dump(mode="json", exclude_unset=True)
        run.summary = summary
        for key, column in (("final_sparsity", "sparsity"), ("final_test_acc", "test_acc"),
                            ("best_test_acc", "best_test_acc")):
            value = summary.get(key)
            if isinstance(value, int | float):
                setattr(run, column, float(value))
    status = "cancelled" if report.status == "completed" and run.cancel_requested else report.status
    runs.set_status(session, run, status, error=report.error)


def heartbeat(session: Session, beat: Heartbeat) -> ReportAck:
    """Record that a worker is alive (and its run, if any); tell it whether that run should stop."""
    worker = session.get(Worker, beat.worker)
    if worker is None:
        worker = Worker(name=beat.worker, started_at=utcnow())
        session.add(worker)
    worker.hostname, worker.queues, worker.device = beat.hostname, beat.queues, beat.device
    worker.device_name, worker.gpu_memory_mb = beat.device_name, beat.gpu_memory_mb
    worker.current_run_id = beat.run_id
    worker.last_heartbeat = utcnow()
    if beat.run_id is None:
        return ReportAck(cancel=False)
    run = session.get(Run, beat.run_id)
    if run is None or run.status != "running" or run.worker != beat.worker:
        return ReportAck(cancel=True, reason="run is no longer assigned to this worker")
    run.last_heartbeat_at = utcnow()
    return ReportAck(cancel=run.cancel_requested, reason="cancel requested" if run.cancel_requested else None)
