"""Reports to the API from a background thread, in order; buffers while the API is away and retries with backoff."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("prunescope.reporter")

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class ReportError(Exception):
    """The API refused a report for good (a 4xx other than a transient one)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code


class ApiClient:
    """Synchronous calls to the worker endpoints, retried while the API is unreachable."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})

    def request(self, method: str, path: str, *, retry_for: float = float("inf"),
                stop: Callable[[], bool] = lambda: False, **kwargs: Any) -> httpx.Response:
        """Send until the API answers with a definite result; ReportError on a definite refusal."""
        delay, deadline = 0.2, time.monotonic() + retry_for
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code not in RETRYABLE:
                    if response.status_code >= 400:
                        raise ReportError(response.status_code, response.text[:500])
                    return response
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline or stop():
                raise ConnectionError(f"API at {self.http.base_url} unreachable: {problem}")
            log.warning("report %s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def close(self) -> None:
        self.http.close()


@dataclass
class _Item:
    method: str
    path: str
    json: dict[str, Any] | None = None
    upload: Path | None = None
    kind: str = "report"
    on_reply: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)


class Reporter:
    """An ordered outbox of reports: `send` never blocks training; `flush` waits until all are delivered."""

    def __init__(self, client: ApiClient, *, on_refused: Callable[[ReportError], None]) -> None:
        self.client = client
        self.on_refused = on_refused
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="prunescope-reporter", daemon=True)
        self._thread.start()

    def send(self, path: str, body: dict[str, Any], on_reply: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._put(_Item("POST", path, json=body, on_reply=on_reply))

    def upload(self, path: str, file: Path, *, latest_only: bool = False) -> None:
        """Queue a file upload; with latest_only, an older upload of the same path still waiting is dropped."""
        with self._cond:
            if latest_only:
                for item in [i for i in self._items if i.kind == "upload" and i.path == path]:
                    self._items.remove(item)
                    if item.upload:
                        item.upload.unlink(missing_ok=True)
            self._items.append(_Item("PUT", path, upload=file, kind="upload"))
            self._cond.notify_all()

    def _put(self, item: _Item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._items) + (1 if self._busy else 0)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued report is delivered (or refused); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._items or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

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
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, item: _Item) -> None:
        try:
            if item.upload is not None:
                with item.upload.open("rb") as handle:
                    content = handle.read()
                self.client.request(item.method, item.path, content=content,
                                    headers={"Content-Type": "application/octet-stream"})
                item.upload.unlink(missing_ok=True)
                return
            response = self.client.request(item.method, item.path, json=item.json)
            if item.on_reply and response.content:
                item.on_reply(response.json())
        except ReportError as exc:
            log.error("API refused %s %s: %s", item.method, item.path, exc)
            self.on_refused(exc)
        except ConnectionError as exc:  # only when retries are bounded; the outbox retries forever
            log.error("gave up on %s %s: %s", item.method, item.path, exc)
