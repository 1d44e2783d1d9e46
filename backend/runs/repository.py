"""Every query on runs and epochs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session

from backend.models import Epoch, Run

SORTABLE = {
    "id": Run.id, "name": Run.name, "status": Run.status, "created_at": Run.created_at,
    "started_at": Run.started_at, "finished_at": Run.finished_at, "sparsity": Run.sparsity,
    "test_acc": Run.test_acc, "best_test_acc": Run.best_test_acc, "strategy": Run.strategy,
    "model": Run.model_name, "dataset": Run.dataset_name, "device": Run.device,
    "epochs_done": Run.epochs_done,
}


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def list_runs(
    session: Session, *, statuses: Sequence[str] = (), tag: str | None = None, text: str | None = None,
    sort: str = "-created_at", limit: int = 50, offset: int = 0,
) -> tuple[list[Run], int]:
    query = select(Run)
    if statuses:
        query = query.where(Run.status.in_(statuses))
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Run.name.ilike(pattern, escape="\\"), Run.strategy.ilike(pattern, escape="\\")))
    if tag:
        # JSON list membership, the same on SQLite and PostgreSQL: match the quoted element in its text form.
        quoted = '"' + tag.replace("\\", "\\\\").replace('"', '\\"') + '"'
        query = query.where(cast(Run.tags, Text).contains(quoted, autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    descending = sort.startswith("-")
    column = SORTABLE[sort.lstrip("-")]
    order = column.desc().nulls_last() if descending else column.asc().nulls_last()
    rows = session.scalars(query.order_by(order, Run.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def list_epochs(session: Session, run_id: int) -> list[Epoch]:
    return list(session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))


def get_epoch(session: Session, run_id: int, epoch: int) -> Epoch | None:
    return session.scalar(select(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == epoch))
