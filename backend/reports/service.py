"""What worker reports do to the database: start (lease), record an epoch with its masks, finish, heartbeat."""

from __future__ import annotations

import hmac
import secrets
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from backend import capabilities
from backend.db import Database
from backend.errors import Conflict, Invalid, NotFound
from backend.maskviews.cache import reported_for
from backend.maskviews.ingest import keyframes_after, snapshot_rows
from backend.reports.schemas import EpochReport, FinishReport, Heartbeat, ReportAck, StartResponse
from backend.runs import service as runs
from backend.tables import Epoch, MaskSnapshot, Run, RunEvent, Worker, utcnow
from prunescope.contract.status import FINISHED_STATUSES, RunStatus, WorkerOutcome


def new_lease() -> str:
    return secrets.token_urlsafe(24)


def start_run(session: Session, run: Run, worker: str, *, heartbeat_timeout: float,
              has_checkpoint: bool) -> StartResponse:
    """A worker picked up the run's task: claim it (a fresh lease) unless it ended, was cancelled or lives elsewhere."""
    if run.status in FINISHED_STATUSES:
        return StartResponse(proceed=False, reason=f"run is {run.status}")
    if run.cancel_requested:
        runs.set_status(session, run, RunStatus.CANCELLED, reason="cancelled before it restarted")
        run.lease = None
        return StartResponse(proceed=False, reason="run was cancelled")
    if run.status == RunStatus.RUNNING:
        fresh = run.last_heartbeat_at and utcnow() - run.last_heartbeat_at < timedelta(seconds=heartbeat_timeout)
        if fresh:
            return StartResponse(proceed=False, reason=f"run is running on {run.worker}")
    # Attempts only grow, so `attempt` names one start for good (epochs record it); a new lease
    # supersedes whatever an earlier attempt's worker still holds.
    run.attempts += 1
    run.lease = new_lease()
    run.worker = worker
    run.last_heartbeat_at = utcnow()
    run.error = None
    # Resume whenever the API holds a checkpoint: it is kept only while the run can resume, and a
    # worker uploads epoch k's checkpoint only after epoch k's report, so it is never ahead of the records.
    resume = has_checkpoint
    runs.set_status(session, run, RunStatus.RUNNING,
                    reason=f"attempt {run.attempts}" + (" (resuming from its checkpoint)" if resume else ""))
    return StartResponse(proceed=True, config=run.config, attempt=run.attempts, lease=run.lease, resume=resume,
                         epochs_done=run.epochs_done)


class LeaseHolder(Protocol):
    """What the lease check reads: a `Run`, or a row of those columns."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def lease(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...


def check_lease(run: LeaseHolder, lease: str | None) -> None:
    """Only the worker holding the current attempt's lease may write for a running run."""
    if run.status != RunStatus.RUNNING or not run.lease:
        raise Conflict(f"run {run.id} is {run.status}: no attempt holds a lease")
    if not lease or not hmac.compare_digest(lease.encode(), run.lease.encode()):
        raise Conflict(f"run {run.id}: the lease is missing or superseded (attempt {run.attempts} holds it)")


# An epoch report's statements, built once: a statement's cache key is computed on first use and kept, and the
# where-clauses are not rebuilt per report (building them cost more than running them).
REPORT_STATE = select(Run.id, Run.status, Run.lease, Run.attempts, Run.epochs_total, Run.epochs_done,
                      Run.best_test_acc, Run.cancel_requested).where(Run.id == bindparam("rid")).with_for_update()
DELETE_EPOCH = delete(Epoch).where(Epoch.run_id == bindparam("rid"), Epoch.epoch == bindparam("n"))
DELETE_SNAPSHOTS = delete(MaskSnapshot).where(MaskSnapshot.run_id == bindparam("rid"),
                                              MaskSnapshot.epoch == bindparam("n"))
# Epochs an earlier attempt recorded after the one a resumed attempt reports: that attempt re-trains them from its
# checkpoint. Kept, a mask delta stored for epoch k+1 would decode against the new attempt's epoch k (another
# mask), giving bits neither attempt had, or none at all.
STALE_EPOCHS = select(Epoch.epoch).where(Epoch.run_id == bindparam("rid"), Epoch.epoch > bindparam("n"),
                                         Epoch.attempt < bindparam("attempt"))
DELETE_STALE_EPOCHS = delete(Epoch).where(Epoch.run_id == bindparam("rid"), Epoch.epoch > bindparam("n"),
                                          Epoch.attempt < bindparam("attempt"))
DELETE_LATER_SNAPSHOTS = delete(MaskSnapshot).where(MaskSnapshot.run_id == bindparam("rid"),
                                                    MaskSnapshot.epoch.in_(bindparam("epochs", expanding=True)))
DELETE_SNAPSHOT_ROWS = delete(MaskSnapshot).where(MaskSnapshot.id.in_(bindparam("ids", expanding=True)))
BEST_TEST_ACC = select(func.max(Epoch.test_acc)).where(Epoch.run_id == bindparam("rid"))
INSERT_EPOCH, INSERT_SNAPSHOTS, INSERT_EVENT = insert(Epoch), insert(MaskSnapshot), insert(RunEvent)
UPDATE_RUN = update(Run).where(Run.id == bindparam("rid"))


def record_epochs(db: Database, run_id: int, reports: Sequence[EpochReport], lease: str | None) -> ReportAck:
    """Store epochs and their mask snapshots in one transaction, all or none; a repeated epoch replaces the
    earlier one (an epoch twice in one call is refused). Each epoch gets its `epoch` event.

    Core statements on one connection, no ORM session: the run's state is one narrow row, and the epochs, their
    snapshots, the run's progress and the events are a handful of statements (a worker reports every epoch, or
    every `report_interval` when epochs are shorter, and a report costs a few milliseconds end to end). The
    caller wakes the run's live streams after this returns (the commit)."""
    with db.write_connection() as conn:
        return record_epochs_on(conn, run_id, reports, lease)


def record_epochs_on(conn: Connection, run_id: int, reports: Sequence[EpochReport], lease: str | None) -> ReportAck:
    """`record_epochs` inside the caller's write transaction on `conn` (a finish that carries its last reports);
    whoever commits it wakes the run's live streams."""
    twice = next((n for n, count in Counter(report.epoch for report in reports).items() if count > 1), None)
    if twice is not None:  # the last copy won silently; a worker sends each epoch once a request
        raise Invalid(f"epoch {twice} appears more than once in one request")
    ordered = sorted(reports, key=lambda report: report.epoch)
    run = conn.execute(REPORT_STATE, {"rid": run_id}).one_or_none()
    if run is None:
        raise NotFound(f"run {run_id} not found")
    check_lease(run, lease)
    past = next((report.epoch for report in ordered if report.epoch > run.epochs_total), None)
    if past is not None:
        raise Invalid(f"epoch {past} is past the run's {run.epochs_total} epochs")
    snapshots: list[dict[str, Any]] = []
    if any(report.masks for report in ordered):
        with Session(bind=conn) as session:  # deltas are checked against the stored masks, in this transaction
            snapshots = snapshot_rows(session, run_id, [(r.epoch, r.masks) for r in ordered if r.masks], lease)
    epochs_done, best_test_acc, best_is_stale = run.epochs_done, run.best_test_acc, False
    if run.attempts > 1:  # a resumed attempt: what an earlier one recorded after this epoch is re-trained
        stale = {"rid": run_id, "n": ordered[0].epoch, "attempt": run.attempts}
        later = list(conn.scalars(STALE_EPOCHS, stale))
        if later:
            conn.execute(DELETE_LATER_SNAPSHOTS, {"rid": run_id, "epochs": later})
            conn.execute(DELETE_STALE_EPOCHS, stale)
            epochs_done, best_is_stale = 0, True  # the newest epoch is now among these reports
    rekeyed = False
    for report in ordered:
        key = {"rid": run_id, "n": report.epoch}
        if conn.execute(DELETE_EPOCH, key).rowcount:
            if not rekeyed:  # the first epoch sent again: the epochs after those sent keep their masks
                rekeyed = True
                snapshots += _keyframes_after(conn, run_id, [r.epoch for r in ordered])
            # A replayed epoch: its snapshots go too (they are only ever stored with their epoch's row).
            conn.execute(DELETE_SNAPSHOTS, key)
    if best_is_stale:  # the best accuracy is one of the epochs that remain (a dropped epoch may have held it)
        best_test_acc = conn.scalar(BEST_TEST_ACC, {"rid": run_id})
    now = utcnow()
    records = [{**report.model_dump(exclude={"worker", "masks"}), "attempt": run.attempts} for report in ordered]
    conn.execute(INSERT_EPOCH, [{**record, "run_id": run_id, "recorded_at": now} for record in records])
    if snapshots:
        conn.execute(INSERT_SNAPSHOTS, snapshots)
    progress = runs.progress_after(ordered, epochs_done, best_test_acc)
    if best_is_stale:
        progress.setdefault("best_test_acc", best_test_acc)
    conn.execute(UPDATE_RUN, {"rid": run_id, "last_heartbeat_at": now, **progress})
    conn.execute(INSERT_EVENT, [{"run_id": run_id, "kind": "epoch", "data": record, "created_at": now}
                                for record in records])
    cancel = bool(run.cancel_requested)
    return ReportAck(cancel=cancel, reason="cancel requested" if cancel else None)


def _keyframes_after(conn: Connection, run_id: int, numbers: list[int]) -> list[dict[str, Any]]:
    """Epochs sent again replace themselves only: a stored delta of the epoch after one of them (not sent again
    too) was encoded against the old copy, so it is stored again as a key frame of the mask it decodes to now
    (a worker's report repeated with other masks left a later epoch's mask wrong, with no error anywhere).
    Deletes the deltas and returns the key-frame rows to insert."""
    with Session(bind=conn) as session:
        ids, keyframes = keyframes_after(session, run_id, numbers)
    if ids:
        conn.execute(DELETE_SNAPSHOT_ROWS, {"ids": ids})
    return keyframes


def missing_epochs(session: Session, run: Run, through: int) -> int:
    """How many of epochs 1..through have no record."""
    recorded = session.scalar(select(func.count()).select_from(Epoch)
                              .where(Epoch.run_id == run.id, Epoch.epoch >= 1, Epoch.epoch <= through)) or 0
    return through - int(recorded)


def finish_run(session: Session, run: Run, report: FinishReport, lease: str | None) -> None:
    """End the attempt: hand the run back (requeue), or end it completed, failed or cancelled."""
    check_lease(run, lease)
    reported_for(session).forget(run.id)  # the lease ends here: its kept masks are never asked for again
    if report.status == WorkerOutcome.REQUEUE:
        run.dispatched, run.worker, run.lease = False, None, None
        if run.cancel_requested:
            # A cancel that met the hand-back (Ctrl-C on the worker, then Cancel): requeued, the run waited for a
            # worker that would only end it, or forever when none was left.
            runs.set_status(session, run, RunStatus.CANCELLED,
                            reason=f"cancelled; worker {report.worker} shut down before it stopped the run")
            return
        run.handbacks += 1  # a clean hand-back is not a failed attempt
        runs.set_status(session, run, RunStatus.QUEUED,
                        reason=f"worker {report.worker} shut down; requeued to resume from its checkpoint")
        return
    status = RunStatus(report.status)
    if status == RunStatus.COMPLETED and run.cancel_requested:
        status = RunStatus.CANCELLED
    if status == RunStatus.COMPLETED:
        _check_complete(session, run, report)
    if report.summary is not None:
        runs.apply_summary(run, report.summary, status)
    run.lease = None
    runs.set_status(session, run, status, error=report.error)


def _check_complete(session: Session, run: Run, report: FinishReport) -> None:
    """`completed` needs epochs 1..N recorded, or an early stop the summary states (then 1..epochs_done)."""
    summary = report.summary
    through = run.epochs_total
    if summary is not None and summary.early_stop:
        if not summary.epochs_done:
            raise Conflict(f"run {run.id}: an early stop must say how many epochs ran (summary.epochs_done)")
        through = min(summary.epochs_done, run.epochs_total)
    missing = missing_epochs(session, run, through)
    if missing:
        raise Conflict(f"run {run.id} cannot complete: {missing} of epochs 1..{through} are not recorded")


def heartbeat(session: Session, beat: Heartbeat, lease: str | None) -> ReportAck:
    """Record that a worker is alive (and keep its run alive); tell it whether that run should stop.

    A beat naming a run needs that run's lease: a stale worker's beat is a 409 and changes nothing.
    """
    run = session.get(Run, beat.run_id) if beat.run_id is not None else None
    if beat.run_id is not None:
        if run is None:
            raise Conflict(f"run {beat.run_id} does not exist")
        check_lease(run, lease)
    worker = session.get(Worker, beat.worker)
    if worker is None:
        worker = Worker(name=beat.worker, started_at=utcnow())
        session.add(worker)
    worker.hostname, worker.queues, worker.device = beat.hostname, list(beat.queues), beat.device
    worker.device_name, worker.gpu_memory_mb = beat.device_name, beat.gpu_memory_mb
    worker.current_run_id = beat.run_id
    worker.last_heartbeat = utcnow()
    capabilities.remember(beat)  # plugin models/datasets it offers, for /api/options and submission checks
    if run is None:
        return ReportAck(cancel=False)
    run.last_heartbeat_at = utcnow()
    return ReportAck(cancel=run.cancel_requested, reason="cancel requested" if run.cancel_requested else None)
