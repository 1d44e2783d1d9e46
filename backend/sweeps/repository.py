"""Queries on sweeps and their runs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.tables import Run, Sweep


def get_sweep(session: Session, sweep_id: int) -> Sweep | None:
    return session.get(Sweep, sweep_id)


def sweep_runs(session: Session, sweep_id: int) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))


def list_sweeps(session: Session, *, limit: int, offset: int) -> tuple[list[Sweep], int]:
    total = session.scalar(select(func.count()).select_from(Sweep)) or 0
    rows = session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def run_stats(session: Session, sweep_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per sweep: runs per status and the summed epochs done and configured, in one grouped query."""
    stats: dict[int, dict[str, Any]] = defaultdict(lambda: {"counts": {}, "done": 0, "total": 0})
    if not sweep_ids:
        return stats
    rows = session.execute(
        select(Run.sweep_id, Run.status, func.count(), func.sum(Run.epochs_done), func.sum(Run.epochs_total))
        .where(Run.sweep_id.in_(sweep_ids)).group_by(Run.sweep_id, Run.status))
    for sweep_id, status, count, done, total in rows:
        if sweep_id is None:  # excluded by the WHERE clause; narrows the type
            continue
        entry = stats[sweep_id]
        entry["counts"][status] = int(count)
        entry["done"] += int(done or 0)
        entry["total"] += int(total or 0)
    return stats
