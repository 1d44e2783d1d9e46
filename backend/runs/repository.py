"""Every query on runs and epochs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from backend.tables import Epoch, Run

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
        # JSON list membership, the same on SQLite and PostgreSQL: match the quoted element in its text form.
        quoted = '"' + tag.replace("\\", "\\\\").replace('"', '\\"') + '"'
        query = query.where(cast(Run.tags, Text).contains(quoted, autoescape=True))
    return query


def list_runs(
    session: Session, filters: RunFilters = RunFilters(), *, sort: str = "-created_at", limit: int = 50,
    offset: int = 0,
) -> tuple[list[Run], int]:
    ids_query = _filtered(select(Run.id), filters)
    total = session.scalar(select(func.count()).select_from(ids_query.subquery())) or 0
    descending = sort.startswith("-")
    column = SORTABLE[sort.lstrip("-")]
    order = column.desc() if descending else column.asc()
    if column.nullable:
        # Only where NULLs exist: NULLS LAST on a NOT NULL column stops PostgreSQL from walking its index
        # backwards (a 100 000-run list then sorts the whole table).
        order = order.nulls_last()
    # Sort ids only, then load the page's rows: the sorter holds (key, id), not thousands of whole rows with
    # their JSON configs.
    ids: list[int] = list(session.scalars(ids_query.order_by(order, Run.id.desc()).limit(limit).offset(offset)))
    by_id = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(ids)))} if ids else {}
    return [by_id[i] for i in ids if i in by_id], total


def list_epochs(session: Session, run_id: int) -> list[Epoch]:
    return list(session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))


def get_epoch(session: Session, run_id: int, epoch: int) -> Epoch | None:
    return session.scalar(select(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == epoch))


def delete_run(session: Session, run_id: int) -> None:
    """Delete a run; its epochs, mask snapshots and events go with it by the foreign keys' ON DELETE CASCADE."""
    session.execute(delete(Run).where(Run.id == run_id))
