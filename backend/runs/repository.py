"""Every query on runs and epochs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, cast, delete, func, or_, select
from sqlalchemy.orm import Session, defer

from backend.tables import Epoch, Run, RunEvent, RunHistory, RunTag

SORTABLE = {
    "id": Run.id, "name": Run.name, "status": Run.status, "created_at": Run.created_at,
    "started_at": Run.started_at, "finished_at": Run.finished_at, "sparsity": Run.sparsity,
    "test_acc": Run.test_acc, "best_test_acc": Run.best_test_acc, "strategy": Run.strategy,
    "model": Run.model_name, "dataset": Run.dataset_name, "device": Run.device,
    "epochs_done": Run.epochs_done, "epochs_total": Run.epochs_total, "preset": Run.preset, "queue": Run.queue,
    "worker": Run.worker, "attempts": Run.attempts, "sweep_id": Run.sweep_id,
}


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


@dataclass(frozen=True)
class RunFilters:
    """What the runs list can be narrowed by; `None` leaves a filter off. Ranges are inclusive."""

    statuses: Sequence[str] = ()
    tag: str | None = None
    text: str | None = None
    preset: str | None = None
    strategy: str | None = None
    device: str | None = None
    model: str | None = None
    dataset: str | None = None
    sweep_id: int | None = None
    min_sparsity: float | None = None
    max_sparsity: float | None = None
    min_acc: float | None = None
    max_acc: float | None = None


def _filtered(query: Select[Any], f: RunFilters) -> Select[Any]:
    if f.statuses:
        query = query.where(Run.status.in_(f.statuses))
    for column, value in ((Run.preset, f.preset), (Run.strategy, f.strategy), (Run.device, f.device),
                          (Run.model_name, f.model), (Run.dataset_name, f.dataset), (Run.sweep_id, f.sweep_id)):
        if value is not None:
            query = query.where(column == value)
    # Ranges apply to the newest (final, once finished) sparsity and test accuracy; runs without one drop out.
    if f.min_sparsity is not None:
        query = query.where(Run.sparsity >= f.min_sparsity)
    if f.max_sparsity is not None:
        query = query.where(Run.sparsity <= f.max_sparsity)
    if f.min_acc is not None:
        query = query.where(Run.test_acc >= f.min_acc)
    if f.max_acc is not None:
        query = query.where(Run.test_acc <= f.max_acc)
    text, tag = f.text, f.tag
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Run.name.ilike(pattern, escape="\\"), Run.strategy.ilike(pattern, escape="\\")))
    if tag:
        # Exact membership through run_tags' (tag, run_id) index (a scan of JSON text took 110 ms at 100 000 runs).
        query = query.where(Run.id.in_(select(RunTag.run_id).where(RunTag.tag == tag)))
    return query


def _tag_only(f: RunFilters) -> bool:
    """A tag and no other filter: the list is answered from run_tags alone (a tag's rows, newest first, on one
    index range; 110 ms -> a few ms at 100 000 runs)."""
    others = (f.preset, f.strategy, f.device, f.model, f.dataset, f.sweep_id, f.min_sparsity, f.max_sparsity,
              f.min_acc, f.max_acc)
    return bool(f.tag) and not f.statuses and not f.text and all(value is None for value in others)


def list_runs(
    session: Session, filters: RunFilters = RunFilters(), *, sort: str = "-created_at", limit: int = 50,
    offset: int = 0,
) -> tuple[list[Run], int]:
    ids_query = _filtered(select(Run.id), filters)
    descending = sort.startswith("-")
    column = SORTABLE[sort.lstrip("-")]
    tag_only = _tag_only(filters)
    if tag_only:
        total = session.scalar(select(func.count()).where(RunTag.tag == filters.tag)) or 0
    else:
        total = session.scalar(select(func.count()).select_from(ids_query.subquery())) or 0
    if tag_only and column is Run.created_at:
        by_time = RunTag.created_at.desc() if descending else RunTag.created_at.asc()
        ids_query = select(RunTag.run_id).where(RunTag.tag == filters.tag).order_by(by_time, RunTag.run_id.desc())
    else:
        order = column.desc() if descending else column.asc()
        if column.nullable:
            # Only where NULLs exist: NULLS LAST on a NOT NULL column stops PostgreSQL from walking its index
            # backwards (a 100 000-run list then sorts the whole table).
            order = order.nulls_last()
        ids_query = ids_query.order_by(order, Run.id.desc())
    # Sort ids only, then load the page's rows: the sorter holds (key, id), not thousands of whole rows with
    # their JSON configs. A list item shows no summary: its JSON (a tracked script's, up to 10 000 values) stays
    # unread.
    ids: list[int] = list(session.scalars(ids_query.limit(limit).offset(offset)))
    page = select(Run).options(defer(Run.summary)).where(Run.id.in_(ids))
    by_id = {run.id: run for run in session.scalars(page)} if ids else {}
    return [by_id[i] for i in ids if i in by_id], total


def list_epochs(session: Session, run_id: int) -> list[Epoch]:
    return list(session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))


def list_epoch_texts(session: Session, run_id: int, names: Sequence[str]) -> Sequence[Sequence[Any]]:
    """A run's epochs in order as plain rows: the named columns, then the layer stats' and the extra scalars'
    JSON as the text it is stored as (not decoded: the history endpoint splices it into its answer)."""
    table = Epoch.__table__
    query = (select(*(table.c[name] for name in names), cast(table.c.layers, Text), cast(table.c.extra, Text))
             .where(table.c.run_id == run_id).order_by(table.c.epoch))
    return session.execute(query).all()


def epochs_text_bytes(session: Session, run_id: int) -> int:
    """The characters of a run's stored layer stats and extra scalars, all epochs together (one aggregate)."""
    table = Epoch.__table__
    size = func.length(cast(table.c.layers, Text)) + func.coalesce(func.length(cast(table.c.extra, Text)), 0)
    return int(session.scalar(select(func.coalesce(func.sum(size), 0)).where(table.c.run_id == run_id)) or 0)


def epochs_fingerprint(session: Session, run_id: int) -> tuple[Any, ...]:
    """What changes whenever a run's epochs do: their count and newest row id, and the run's newest event (every
    epoch written, a replayed one too, adds an `epoch` event in its transaction). Index lookups only."""
    epochs = select(func.count(), func.max(Epoch.id)).where(Epoch.run_id == run_id)
    newest_event = select(func.max(RunEvent.id)).where(RunEvent.run_id == run_id).scalar_subquery()
    return tuple(session.execute(epochs.add_columns(newest_event)).one())


def stored_history(session: Session, run_id: int, layout: str) -> tuple[str, bytes] | None:
    """The kept history answer of a run in `layout`: its fingerprint and gzipped body (None when none is kept)."""
    row = session.execute(select(RunHistory.fingerprint, RunHistory.body)
                          .where(RunHistory.run_id == run_id, RunHistory.layout == layout)).first()
    return (row[0], row[1]) if row is not None else None


def kept_fingerprints(session: Session, run_id: int) -> set[str]:
    """The fingerprints a run's kept history answers were built at (empty when none is kept)."""
    return set(session.scalars(select(RunHistory.fingerprint).where(RunHistory.run_id == run_id)))


def keep_histories(session: Session, run_id: int, fingerprint: str, bodies: dict[str, bytes]) -> None:
    """Replace a run's kept history answers with `bodies` (layout → gzipped body), all at `fingerprint`."""
    session.execute(delete(RunHistory).where(RunHistory.run_id == run_id))
    session.add_all(RunHistory(run_id=run_id, layout=layout, fingerprint=fingerprint, body=body)
                    for layout, body in bodies.items())


def get_epoch(session: Session, run_id: int, epoch: int) -> Epoch | None:
    return session.scalar(select(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == epoch))


def delete_run(session: Session, run_id: int) -> None:
    """Delete a run; its epochs, mask snapshots and events go with it by the foreign keys' ON DELETE CASCADE."""
    session.execute(delete(Run).where(Run.id == run_id))
