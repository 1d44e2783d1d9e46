"""Wakes live streams when a run gains an event; the database stays the source of truth."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from backend.db import Base
from backend.tables import RunEvent, utcnow

NOTIFY = "prunescope_notify"
EVENTS_PER_READ = 500
FeedEvent = tuple[int, str, str]  # id, kind, data as JSON text
Loader = Callable[[int], Awaitable[tuple[list[FeedEvent], bool]]]
"""Reads a run's events after an id (at most EVENTS_PER_READ) and whether the run has finished."""


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


def events_after(session: Session, run_id: int, after_id: int, limit: int = EVENTS_PER_READ) -> list[RunEvent]:
    query = select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.id > after_id).order_by(RunEvent.id).limit(limit)
    return list(session.scalars(query))


class RunFeed:
    """The newest events of one run, read from the database once for all of its streams, not once per stream:
    a hundred dashboards on a run cost one query an event. Complete for ids above `covered_from`; re-read after
    a notify, or after `max_age` seconds (another API process may have written)."""

    KEEP = 1000

    def __init__(self, max_age: float = 0.5) -> None:
        self.max_age = max_age
        self.version = 0  # bumped by EventHub.notify (under its lock), from any thread
        self._loaded_version = -1  # the version the last read saw; -1: read again (never read, or more was waiting)
        self._loaded_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.covered_from: int | None = None
        self.events: list[FeedEvent] = []
        self.finished = False

    async def read(self, after: int, load: Loader) -> tuple[list[FeedEvent], bool] | None:
        """The events after `after` and whether the run has finished; None when the feed does not reach back to
        `after` (the stream then reads the database itself until it catches up)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one read at a time; the streams waiting behind it are answered from its result
            if self.covered_from is not None and after < self.covered_from:
                return None
            stale = self.version != self._loaded_version or time.monotonic() - self._loaded_at >= self.max_age
            if self.covered_from is None or stale:
                version = self.version  # read before the query: a notify during it leaves the feed stale
                since = after if self.covered_from is None else (self.events[-1][0] if self.events
                                                                 else self.covered_from)
                rows, self.finished = await load(since)
                if self.covered_from is None:
                    self.covered_from = since
                self.events.extend(rows)
                if len(self.events) > self.KEEP:
                    self.covered_from = self.events[-self.KEEP - 1][0]
                    del self.events[:-self.KEEP]
                self._loaded_version = version if len(rows) < EVENTS_PER_READ else -1  # a full page: more to read
                self._loaded_at = time.monotonic()
            # Ids are ascending: each stream slices from its position instead of scanning the whole feed.
            return self.events[bisect.bisect_right(self.events, after, key=lambda e: e[0]):], self.finished


class Subscription:
    """One stream's wake-up flag; clear it before reading the database so no notify is missed."""

    def __init__(self, hub: EventHub, run_id: int) -> None:
        self.hub, self.run_id = hub, run_id
        self.loop = asyncio.get_running_loop()
        self.flag = asyncio.Event()
        self.feed: RunFeed  # the run's shared feed, from entering on

    def clear(self) -> None:
        self.flag.clear()

    async def wait(self, timeout: float) -> None:
        """Return when the run gains an event, or after `timeout` (a poll, for other API processes)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flag.wait(), timeout)

    def __enter__(self) -> Subscription:
        with self.hub.lock:
            self.hub.subscriptions[self.run_id].add(self)
            feed = self.hub.feeds.get(self.run_id)
            if feed is None:
                feed = self.hub.feeds[self.run_id] = RunFeed()
            self.feed = feed
        return self

    def __exit__(self, *exc: object) -> None:
        with self.hub.lock:
            subs = self.hub.subscriptions[self.run_id]
            subs.discard(self)
            if not subs:
                del self.hub.subscriptions[self.run_id]
                self.hub.feeds.pop(self.run_id, None)


class EventHub:
    """In-process wake-ups: writers call `notify(run_id)` from any thread, after their commit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscriptions: dict[int, set[Subscription]] = defaultdict(set)
        self.feeds: dict[int, RunFeed] = {}  # one per run with streams

    def subscribe(self, run_id: int) -> Subscription:
        return Subscription(self, run_id)

    def notify(self, run_id: int) -> None:
        with self.lock:
            subs = list(self.subscriptions.get(run_id, ()))
            feed = self.feeds.get(run_id)
            if feed is not None:
                feed.version += 1
        for sub in subs:
            sub.loop.call_soon_threadsafe(sub.flag.set)
