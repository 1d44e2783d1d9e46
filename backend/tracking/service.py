"""What the tracking API does to the database: create a tracked run, record batches, finish, notice silence."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, cast, get_args

from sqlalchemy import CursorResult, delete, insert, select
from sqlalchemy.orm import Session

from backend.errors import Conflict, NotFound
from backend.events import record_event, record_events, table_of
from backend.maskviews.cache import reported_for
from backend.maskviews.ingest import keyframes_after, snapshot_rows
from backend.runs import service as runs
from backend.tables import Epoch, MaskSnapshot, Run, RunPoint, utcnow
from prunescope.contract.config import Device, PruningConfig, RunConfig
from prunescope.contract.records import RunSummary
from prunescope.contract.status import FINISHED_STATUSES
from prunescope.contract.tracking import (
    BatchAck,
    TrackedBatch,
    TrackedEpoch,
    TrackedFinish,
    TrackedRunCreate,
    TrackedRunCreated,
)

TRACKED = "tracked"
SILENT = "the script sent nothing for"  # how a silent tracked run's error starts; a later write revives it
POINTS_PER_EVENT = 1000


def lease_digest(lease: str) -> str:
    return hashlib.sha256(lease.encode()).hexdigest()


def _name_in(config: dict[str, Any], *keys: str) -> str:
    """A model or dataset label from the script's config (`"model": "resnet20"` or `{"name": ...}`)."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("name")
        if isinstance(value, str) and value:
            return value[:32]
    return ""


def strategy_of(pruning: PruningConfig | None) -> str:
    # The same label managed runs get, so lists, compare and Pareto group tracked runs with them.
    return RunConfig.model_construct(pruning=pruning).strategy()


def create_tracked_run(session: Session, body: TrackedRunCreate) -> TrackedRunCreated:
    """A running tracked run; a create repeated with the same lease answers the run it made (a retried POST)."""
    lease = body.lease or secrets.token_urlsafe(32)
    digest = lease_digest(lease)
    existing = session.scalar(select(Run).where(Run.tracked_lease == digest))
    if existing is not None:
        return TrackedRunCreated(id=existing.id, lease=lease, status=existing.status, created=False)
    config = dict(body.config)
    if body.pruning is not None and "pruning" not in config:
        config["pruning"] = body.pruning.model_dump(mode="json")
    device = config.get("device")
    now = utcnow()
    run = Run(name=body.name, tags=list(body.tags), notes="", config=config, kind=TRACKED, tracked_lease=digest,
              status="queued", strategy=strategy_of(body.pruning),
              device=device if device in get_args(Device) else "auto",
              model_name=_name_in(config, "model", "arch"), dataset_name=_name_in(config, "dataset", "data"),
              epochs_total=body.epochs or 0, dispatched=True, dispatched_at=now, attempts=1,
              worker=body.host or "sdk", last_heartbeat_at=now, created_at=now)
    session.add(run)
    session.flush()
    if body.started_at is not None:  # uploaded by `prunescope sync`: it ran then, not now
        run.created_at = run.dispatched_at = body.started_at
    runs.set_status(session, run, "running", reason="tracked run started by its script")
    if body.started_at is not None:
        run.started_at = body.started_at
    return TrackedRunCreated(id=run.id, lease=lease, status=run.status, created=True)


def tracked_run(session: Session, run_id: int, lease: str | None) -> Run:
    """The tracked run `run_id`, if `lease` is the one that created it (409 otherwise: nothing is written)."""
    run = session.get(Run, run_id)
    if run is None or run.kind != TRACKED:
        raise NotFound(f"tracked run {run_id} not found")
    if not lease or run.tracked_lease is None or not hmac.compare_digest(lease_digest(lease), run.tracked_lease):
        raise Conflict(f"run {run_id} is written only by the script that created it: "
                       "its lease is missing or wrong (X-Prunescope-Lease)")
    return run


def _revive(session: Session, run: Run) -> None:
    """A script that went silent (killed, or offline) and writes again is running after all."""
    if run.status == "failed" and (run.error or "").startswith(SILENT):
        run.error = None
        runs.set_status(session, run, "running", reason="the script is sending again")


def record_batch(session: Session, run: Run, batch: TrackedBatch) -> BatchAck:
    """Store a batch of epochs and points in the caller's transaction; a replayed epoch or step replaces itself."""
    _revive(session, run)
    if batch.pruning is not None:
        run.strategy = strategy_of(batch.pruning)
        if "pruning" not in run.config:
            run.config = {**run.config, "pruning": batch.pruning.model_dump(mode="json")}
    if batch.epochs_total is not None:
        run.epochs_total = batch.epochs_total
    for part in _parts(batch.epochs):
        _store_epochs(session, run, part)
    if batch.points:
        _store_points(session, run, batch)
    if run.status == "running":
        run.last_heartbeat_at = utcnow()
    cancel = run.cancel_requested or run.status == "cancelled"
    return BatchAck(cancel=cancel, reason="cancel requested" if cancel else None, epochs_done=run.epochs_done,
                    stored_epochs=len({e.epoch for e in batch.epochs}),
                    stored_points=len({p.step for p in batch.points}))


def _parts(epochs: list[TrackedEpoch]) -> list[list[TrackedEpoch]]:
    """The batch's epochs in the order logged, cut before each epoch logged again, each part by epoch.

    A mask delta is encoded against the epoch logged just before it, so an epoch replayed within a batch
    ([1, 2, 1]) is stored after the epochs logged before it, as if it came in the next batch: the 2 between the
    two 1s decodes against the first 1, the one it was encoded against. A batch without replays is one part."""
    parts: list[list[TrackedEpoch]] = []
    current: dict[int, TrackedEpoch] = {}
    for epoch in epochs:
        if epoch.epoch in current:
            parts.append(sorted(current.values(), key=lambda e: e.epoch))
            current = {}
        current[epoch.epoch] = epoch
    if current:
        parts.append(sorted(current.values(), key=lambda e: e.epoch))
    return parts


def _store_epochs(session: Session, run: Run, epochs: list[TrackedEpoch]) -> None:
    numbers = [e.epoch for e in epochs]
    snapshots = snapshot_rows(session, run.id, [(e.epoch, e.masks) for e in epochs], run.lease)
    deleted = session.execute(delete(Epoch).where(Epoch.run_id == run.id, Epoch.epoch.in_(numbers)))
    replaced = cast(CursorResult[Any], deleted).rowcount
    # Only a batch that replays an epoch (a tracked run stores an epoch's masks with its record) looks further.
    ids, keyframes = keyframes_after(session, run.id, numbers) if replaced else ([], [])
    session.execute(delete(MaskSnapshot).where(MaskSnapshot.run_id == run.id, MaskSnapshot.epoch.in_(numbers)))
    if ids:
        session.execute(delete(MaskSnapshot).where(MaskSnapshot.id.in_(ids)))
    snapshots += keyframes
    now = utcnow()
    rows, events = [], []
    for e in epochs:
        record = {**e.model_dump(exclude={"masks", "extra"}), "attempt": run.attempts}  # a script: one attempt
        rows.append({**record, "run_id": run.id, "extra": e.extra or None, "recorded_at": now})
        events.append({**record, "extra": e.extra} if e.extra else record)
    # One executemany each for the epochs and their events: a 1000-epoch sync is a few statements, not
    # 2000 ORM flushes; into the tables themselves (Core), not through the ORM's bulk insert of mapped rows.
    session.execute(insert(table_of(Epoch)), rows)
    record_events(session, run.id, "epoch", events)
    if snapshots:
        session.execute(insert(table_of(MaskSnapshot)), snapshots)
    for column, value in runs.progress_after(epochs, run.epochs_done, run.best_test_acc).items():
        setattr(run, column, value)
    run.epochs_total = max(run.epochs_total, run.epochs_done)


def _store_points(session: Session, run: Run, batch: TrackedBatch) -> None:
    points = sorted({p.step: p for p in batch.points}.values(), key=lambda p: p.step)
    session.execute(delete(RunPoint).where(RunPoint.run_id == run.id, RunPoint.step.in_([p.step for p in points])))
    now = utcnow()
    session.execute(insert(RunPoint), [{"run_id": run.id, "step": p.step, "epoch": p.epoch, "values": p.values,
                                        "recorded_at": now} for p in points])
    shown = points[-POINTS_PER_EVENT:]
    record_event(session, run.id, "points", {"points": [p.model_dump() for p in shown]})


def finish_tracked_run(session: Session, run: Run, body: TrackedFinish) -> None:
    """End a tracked run; finishing again with the same status is a no-op (a replayed sync)."""
    status = "cancelled" if body.status == "completed" and run.cancel_requested else body.status
    silent = run.status == "failed" and (run.error or "").startswith(SILENT)
    if run.status in FINISHED_STATUSES and not silent:
        if run.status in (status, "cancelled"):
            return  # the same end again, or a cancel that already ended it
        raise Conflict(f"run {run.id} already ended {run.status}; it cannot now be {status}")
    reported_for(session).forget(run.id)  # its kept masks (a revived run replays the stored chain once)
    # The newest epoch that measured accuracy: a Lightning fit whose last epoch did not validate (every 2nd epoch,
    # max_steps mid-epoch) had none, so the run showed "—" in the list and left the Pareto front.
    accuracy = run.test_acc if run.test_acc is not None else session.scalar(
        select(Epoch.test_acc).where(Epoch.run_id == run.id, Epoch.test_acc.is_not(None))
        .order_by(Epoch.epoch.desc()).limit(1))
    # A script that sends no summary gets the one its records give (it was null: the run page had no final figures).
    summary = body.summary if body.summary is not None else RunSummary(**{key: value for key, value in (
        ("final_test_acc", accuracy), ("best_test_acc", run.best_test_acc), ("final_sparsity", run.sparsity),
        ("epochs_done", run.epochs_done)) if value is not None})
    runs.apply_summary(run, summary, status)
    if status == "completed":
        run.test_acc = accuracy  # the newest epoch's, else the newest that measured one
        run.epochs_total = run.epochs_done or run.epochs_total  # ended on purpose: max_steps before max_epochs
    run.error = None if status == "completed" else run.error
    runs.set_status(session, run, status, error=body.error)
    if body.finished_at is not None:  # a run synced later ended when its script ended it (never before it started)
        run.finished_at = max(body.finished_at, run.started_at) if run.started_at is not None else body.finished_at


def end_silent_run(session: Session, run: Run, silent_seconds: float) -> None:
    """The dispatcher's verdict on a tracked run whose script stopped writing: failed (or cancelled) with why."""
    if run.cancel_requested:
        runs.set_status(session, run, "cancelled", reason=f"cancelled; {SILENT} {silent_seconds:g} s")
        return
    runs.set_status(session, run, "failed", error=f"{SILENT} {silent_seconds:g} s (killed, or offline: "
                                                  "`prunescope sync` uploads what it spooled)")


def list_points(session: Session, run_id: int, after_step: int, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(select(RunPoint.step, RunPoint.epoch, RunPoint.values)
                           .where(RunPoint.run_id == run_id, RunPoint.step > after_step)
                           .order_by(RunPoint.step).limit(limit))
    return [{"step": step, "epoch": epoch, "values": values} for step, epoch, values in rows]
