"""The tables: runs, their epochs, mask snapshots and events, and the workers that train them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.schema import CreateIndex
from sqlalchemy.types import TypeDecorator

from backend.db import Base
from prunescope.contract.status import RunStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


RUN_LIST_COLUMNS = ("status", "sparsity", "test_acc", "best_test_acc", "created_at", "strategy", "model_name",
                    "dataset_name", "device", "preset", "sweep_id", "epochs_done")


class Run(Base):
    __tablename__ = "runs"
    # The Pareto view and the list's model/dataset filters select completed runs of one model and dataset.
    # ix_runs_list covers the runs list's status-led filters and sorts, so counting and paging 10 000 runs
    # scans a narrow index instead of rows that carry their JSON config (25 -> 4 ms on SQLite).
    # sqlite_autoincrement: ids are never reused after a delete (migration 0006).
    __table_args__ = (Index("ix_runs_model_name_dataset_name", "model_name", "dataset_name"),
                      Index("ix_runs_list", *RUN_LIST_COLUMNS), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value, index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    strategy: Mapped[str] = mapped_column(String(100), default="dense", index=True)
    preset: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device: Mapped[str] = mapped_column(String(8), default="auto")
    queue: Mapped[str | None] = mapped_column(String(16), nullable=True)
    model_name: Mapped[str] = mapped_column(String(32), default="")
    dataset_name: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    epochs_total: Mapped[int] = mapped_column(Integer, default=0)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    # Outbox: a run is committed first, then sent to the broker; `dispatched` records the send.
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A clean hand-back (worker shutdown) starts another attempt but must not use up max_attempts.
    handbacks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The current attempt's lease (opaque, from `start`): only a worker holding it may write for the run.
    lease: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Denormalised from epochs and summary so that lists sort and filter in SQL.
    sparsity: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_test_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    sweep_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # `tracked`: recorded by a user's own script through the SDK (no worker, free-form config).
    kind: Mapped[str] = mapped_column(String(16), default="managed", server_default="managed")
    # SHA-256 of the lease the creating script holds; unique so a retried create finds its run.
    tracked_lease: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True, index=True)
    # One row per tag, kept in step with `tags` (see _sync_run_tags); rows go with the run (ON DELETE CASCADE).
    tag_rows: Mapped[list[RunTag]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class RunTag(Base):
    """A run's tag as a row of its own, with the run's creation time: the runs list's tag filter counts and pages
    (newest first) on one index range instead of scanning JSON text or looking up every tagged run."""

    __tablename__ = "run_tags"
    __table_args__ = (Index("ix_run_tags_tag_created_at", "tag", "created_at", "run_id"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the run's, set at flush (_stamp_run_tags)


def indexed_tags(tags: Any) -> list[str]:
    """The tags of a `tags` value that get a run_tags row: distinct strings a filter can name (≤ 64 characters)."""
    if not isinstance(tags, list):
        return []
    return list(dict.fromkeys(t for t in tags if isinstance(t, str) and 0 < len(t) <= 64))


@event.listens_for(Run.tags, "set")
def _sync_run_tags(run: Run, tags: Any, _old: Any, _initiator: Any) -> None:
    """Each assignment of `Run.tags` (create, PATCH, tracked runs, sweeps) rewrites its rows; kept tags keep theirs."""
    kept = {row.tag: row for row in run.tag_rows}
    run.tag_rows = [kept.get(tag) or RunTag(tag=tag) for tag in indexed_tags(tags)]


@event.listens_for(Session, "before_flush")
def _stamp_run_tags(session: Session, _context: Any, _instances: Any) -> None:
    """Tag rows carry their run's creation time: a new run gets its own here rather than at INSERT."""
    for run in (*session.new, *session.dirty):
        if not isinstance(run, Run):
            continue
        # Rows in memory (tags set in this session) or a changed creation time: other runs cost no query.
        if "tag_rows" in vars(run) or inspect(run).attrs.created_at.history.has_changes():
            if run.created_at is None:
                run.created_at = utcnow()
            for row in run.tag_rows:
                if row.created_at != run.created_at:
                    row.created_at = run.created_at


# Runs of a status best first: `-test_acc` sorts NULLs last on both databases, so that page is read off this
# index instead of sorting every completed run; with sparsity in it, the list's sparsity range filters there
# too (migration 0008). SQLite cannot say NULLS LAST in an index, but its DESC order already puts NULLs last.
Index("ix_runs_status_test_acc", Run.status, Run.test_acc.desc().nulls_last(), Run.id.desc(), Run.sparsity)


@compiles(CreateIndex, "sqlite")
def _create_index_sqlite(create: CreateIndex, compiler: Any, **kw: Any) -> str:
    return str(compiler.visit_create_index(create, **kw)).replace(" DESC NULLS LAST", " DESC")


class Sweep(Base):
    """A grid of runs created together from one base config; its runs point back by `sweep_id`."""

    __tablename__ = "sweeps"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, list[Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


# Chart series read these columns of a run's epochs; covering them keeps the big `layers` JSON rows unread.
EPOCH_SERIES_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "sparsity", "target_sparsity",
                        "nonzero", "total", "epoch_seconds", "samples_per_s")


class Epoch(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),
                      Index("ix_epochs_run_id_series", "run_id", "epoch", *EPOCH_SERIES_COLUMNS))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    sparsity: Mapped[float | None] = mapped_column(Float, nullable=True)
    target_sparsity: Mapped[float | None] = mapped_column(Float, nullable=True)
    nonzero: Mapped[int | None] = mapped_column(Integer, nullable=True)
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    epoch_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    layers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # a tracked run's other scalars


class RunPoint(Base):
    """Scalars a tracked run logged inside an epoch, at a global step."""

    __tablename__ = "run_points"
    __table_args__ = (UniqueConstraint("run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MaskSnapshot(Base):
    """One layer's mask at one epoch, bit-packed and compressed (a key frame or a delta)."""

    __tablename__ = "mask_snapshots"
    __table_args__ = (UniqueConstraint("run_id", "layer", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(Integer)
    shape: Mapped[list[int]] = mapped_column(JSON)
    encoding: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    nbytes: Mapped[int] = mapped_column(Integer, default=0)


class RunHistory(Base):
    """A finished run's history answer (`GET /api/runs/{id}/epochs` in one layout) as sent, gzipped, kept when
    the run ended: the first read of a large finished run is this one row, not its epochs' stored JSON decoded
    and transposed again. It serves while the run's epochs keep `fingerprint` (`repository.epochs_fingerprint`)."""

    __tablename__ = "run_histories"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    layout: Mapped[str] = mapped_column(String(16), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(200))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class RunEvent(Base):
    """What the live stream sends: the id is the SSE event id, so a client resumes from it."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Worker(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200), default="")
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    device: Mapped[str] = mapped_column(String(16), default="cpu")
    device_name: Mapped[str] = mapped_column(String(200), default="")
    gpu_memory_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    current_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
