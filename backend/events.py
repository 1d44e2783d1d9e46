"""Wakes live streams when a run gains an event; the database stays the source of truth."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from backend.db import Base
from backend.tables import RunEvent, utcnow

NOTIFY = "prunescope_notify"


def table_of(mapped: type[Base]) -> Table:
    """A mapped class's table, for Core inserts of many rows (the ORM's bulk insert does more per row)."""
    return Base.metadata.tables[mapped.__tablename__]


def record_event(session: Session, run_id: int, kind: str, data: dict[str, Any]) -> None:
    """Add an event to the run's stream (committed with the caller's transaction)."""
    session.add(RunEvent(run_id=run_id, kind=kind, data=data))
    session.info.setdefault(NOTIFY, set()).add(run_id)


def record_events(session: Session, run_id: int, kind: str, datas: list[dict[str, Any]]) -> None:
    """Add many events of one kind in one statement (a batch of epochs), in order."""
    if datas:
        now = utcnow()
        session.execute(insert(table_of(RunEvent)), [{"run_id": run_id, "kind": kind, "data": data, "created_at": now}
                                                     for data in datas])
        session.info.setdefault(NOTIFY, set()).add(run_id)


def notified_runs(session: Session) -> set[int]:
    """The runs that gained events in this session since the last call (to wake their streams after commit)."""
    runs: set[int] = session.info.pop(NOTIFY, set())
    return runs


def events_after(session: Session, run_id: int, after_id: int, limit: int = 500) -> list[RunEvent]:
    query = select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.id > after_id).order_by(RunEvent.id).limit(limit)
    return list(session.scalars(query))


class Subscription:
    """One stream's wake-up flag; clear it before reading the database so no notify is missed."""

    def __init__(self, hub: EventHub, run_id: int) -> None:
        self.hub, self.run_id = hub, run_id
        self.loop = asyncio.get_running_loop()
        self.flag = asyncio.Event()

    def clear(self) -> None:
        self.flag.clear()

    async def wait(self, timeout: float) -> None:
        """Return when the run gains an event, or after `timeout` (a poll, for other API processes)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flag.wait(), timeout)

    def __enter__(self) -> Subscription:
        with self.hub.lock:
            self.hub.subscriptions[self.run_id].add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.hub.lock:
            subs = self.hub.subscriptions[self.run_id]
            subs.discard(self)
            if not subs:
                del self.hub.subscriptions[self.run_id]


class EventHub:
    """In-process wake-ups: writers call `notify(run_id)` from any thread, after their commit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscriptions: dict[int, set[Subscription]] = defaultdict(set)

    def subscribe(self, run_id: int) -> Subscription:
        return Subscription(self, run_id)

    def notify(self, run_id: int) -> None:
        with self.lock:
            subs = list(self.subscriptions.get(run_id, ()))
        for sub in subs:
            sub.loop.call_soon_threadsafe(sub.flag.set)
