"""An ordered outbox of one run's reports, delivered from a background thread; every failure is accounted for.

Training never waits for the API: `send` queues. Deliveries happen in order (a delta mask needs the epoch
before it), each retried for a bounded time. A definite refusal, an exhausted retry or any unexpected error
stops the outbox, drops what is left and is reported once through `on_failure`: the thread never dies
silently and `flush` never waits without a bound. A delivery may `linger` (a run's epoch reports wait out the
report interval, to go together); a flush, an abort or a close ends the wait at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from worker.api_client import ApiRefused

log = logging.getLogger("prunescope.worker.reporter")

Deliver = Callable[[Callable[[], bool]], None]
"""Sends one report; gets a `stop()` to poll while it retries (true once the outbox is aborted)."""
Label = str | Callable[[], str]
"""What an item delivers, for a failure's message; a callable is asked when the failure happens."""


@dataclass
class Failure:
    """Why the outbox stopped: `superseded` when the API gave the run to another attempt (409)."""

    what: str
    reason: str
    superseded: bool = False

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass
class _Item:
    what: Label
    deliver: Deliver
    key: str | None = None  # items with the same key replace each other while waiting (latest checkpoint)
    spool: Path | None = field(default=None, repr=False)  # removed once delivered or dropped

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)


class Reporter:
    """The outbox: `send` never blocks, `flush(timeout)` waits for delivery, `failure` says why it stopped."""

    def __init__(self, *, on_failure: Callable[[Failure], None], name: str = "prunescope-reporter") -> None:
        self.on_failure = on_failure
        self.failure: Failure | None = None
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._flushing = 0  # callers waiting in `flush`: a lingering delivery goes at once
        self._closed = False
        self._aborted = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def send(self, what: Label, deliver: Deliver, *, key: str | None = None, spool: Path | None = None) -> None:
        """Queue a delivery; with `key`, a queued delivery of the same key that has not started is dropped."""
        item = _Item(what, deliver, key, spool)
        with self._cond:
            if self._aborted.is_set() or self._closed:
                item.discard()
                return
            if key is not None:
                for old in [i for i in self._items if i.key == key]:
                    self._items.remove(old)
                    old.discard()
            self._items.append(item)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._items) + (1 if self._busy else 0)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued report is delivered (or the outbox stopped); False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()  # wakes a lingering delivery
            try:
                while self._items or self._busy:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def linger(self, until: float, *, unless: Callable[[], bool] = lambda: False) -> None:
        """For a delivery: wait until the monotonic time `until` (to take what is queued by then along), unless
        a caller is flushing, the outbox is aborted or closed, or `unless()` holds (asked again whenever something
        is queued): then return at once."""
        with self._cond:
            while not (self._flushing or self._closed or self._aborted.is_set() or unless()):
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def abort(self) -> None:
        """Stop delivering: a delivery in progress stops retrying, queued ones are dropped."""
        self._aborted.set()
        self._drop_all()

    def close(self, timeout: float = 10.0) -> None:
        """Abort whatever is left and wait (bounded) for the thread to end."""
        self.abort()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)

    @staticmethod
    def _label(item: _Item) -> str:
        return item.what() if callable(item.what) else item.what

    def _drop_all(self) -> None:
        with self._cond:
            while self._items:
                self._items.popleft().discard()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    return
                item = self._items.popleft()
                self._busy = True
            try:
                self._deliver(item)
            finally:
                item.discard()
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, item: _Item) -> None:
        try:
            item.deliver(self._aborted.is_set)
            return
        except ApiRefused as exc:
            failure = Failure(self._label(item), str(exc), superseded=exc.superseded)
        except Exception as exc:  # ApiUnreachable after its bound, a missing spool file, a bug: all end the run
            failure = Failure(self._label(item), f"{type(exc).__name__}: {exc}")
        if self._aborted.is_set() and self.failure is None and not failure.superseded:
            return  # aborted on purpose (shutdown): nothing failed
        log.error("report stopped: %s", failure)
        self._aborted.set()
        self._drop_all()
        if self.failure is None:
            self.failure = failure
            try:
                self.on_failure(failure)
            except Exception:  # the callback must not take the thread down with it
                log.exception("reporter failure callback raised")
