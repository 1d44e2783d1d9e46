"""Queries on workers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.tables import Worker, utcnow


def online_workers(session: Session, timeout_seconds: float) -> list[Worker]:
    """Workers whose last heartbeat is younger than `timeout_seconds`, by name."""
    cutoff = utcnow() - timedelta(seconds=timeout_seconds)
    return list(session.scalars(select(Worker).where(Worker.last_heartbeat >= cutoff).order_by(Worker.name)))
