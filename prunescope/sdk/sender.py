"""The SDK's background sender: `run.log` only queues; this thread encodes masks, batches records, sends them
every fraction of a second, and spools them to disk while the API cannot be reached."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import orjson

from prunescope import maskcodec
from prunescope.sdk import spool as spooling
from prunescope.sdk.transport import ApiUnreachable, TrackingError, Transport, batch_bodies

log = logging.getLogger("prunescope.sdk")
Item = tuple[str, Any]


class Sender:
    """Owns the run's wire state (mask chain, run id, online/offline); the training thread only calls `put`."""

    def __init__(self, transport: Transport | None, spool: spooling.Spool, run_id: int | None, *,
                 flush_seconds: float = 0.25, max_pending: int = 1000, keepalive_seconds: float = 5.0,
                 retry_seconds: float = 10.0) -> None:
        self.transport, self.spool, self.run_id = transport, spool, run_id
        self.online = transport is not None and run_id is not None
        self.flush_seconds, self.max_pending = flush_seconds, max_pending
        self.keepalive_seconds, self.retry_seconds = keepalive_seconds, retry_seconds
        self.encoder = maskcodec.MaskEncoder()
        self.cancelled = threading.Event()
        self.fatal: TrackingError | None = None
        self._pending: list[Item] = []
        self._cond = threading.Condition()
        self._closing = False
        self._last_contact = time.monotonic()
        self._last_retry = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="prunescope-sender", daemon=True)
        self._thread.start()

    def put(self, kind: str, payload: Any) -> None:
        with self._cond:
            self._pending.append((kind, payload))
            if len(self._pending) >= self.max_pending:
                self._cond.notify()

    def close(self, finish: dict[str, Any] | None, timeout: float | None = None) -> None:
        """Send (or spool) what is queued and the finish record, then fsync the spool."""
        with self._cond:
            if finish is not None:
                self._pending.append(("finish", finish))
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    # ----- the thread ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._pending and not self._closing:
                    self._cond.wait(self.flush_seconds)
                items, self._pending = self._pending, []
                closing = self._closing
            try:
                self._process(items)
                if not items:
                    self._idle()
            except Exception as exc:  # a bug here must not lose records silently: keep them and say so
                # The next log() raises this; set first, so that a spool failing too cannot hide it.
                self.fatal = self.fatal or TrackingError(f"the SDK's sender failed: {exc}")
                log.exception("prunescope: the sender failed; records of this flush are spooled")
                try:
                    self._spool(*self._serialise(items, encode=False))
                except Exception:
                    log.exception("prunescope: these records could not be spooled either; they are lost")
            if closing:
                with self._cond:
                    if self._pending:
                        continue
                self._finish_spool()
                return

    def _serialise(self, items: list[Item], *, encode: bool = True) -> tuple[list[bytes], list[bytes],
                                                                             dict[str, Any], Any]:
        epochs: list[bytes] = []
        points: list[bytes] = []
        setup: dict[str, Any] = {}
        finish = None
        for kind, payload in items:
            if kind == "epoch":
                record, masks = payload
                if masks and encode:
                    record = {**record, "masks": self.encoder.encode(record["epoch"], masks)}
                epochs.append(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))
            elif kind == "point":
                points.append(orjson.dumps(payload))
            elif kind == "setup":
                setup.update(payload)
            elif kind == "finish":
                finish = payload
        return epochs, points, setup, finish

    def _process(self, items: list[Item]) -> None:
        if not items:
            return
        epochs, points, setup, finish = self._serialise(items)
        if self.online and self.fatal is None:
            try:
                if epochs or points or setup:
                    self._send(epochs, points, setup)
                if finish is not None:
                    assert self.transport is not None and self.run_id is not None
                    # Online, the API's clock stamps the end; the script's time goes only with a spooled finish,
                    # to the API `prunescope sync` uploads it to.
                    self.transport.finish(self.run_id, {k: v for k, v in finish.items() if k != "finished_at"})
                return
            except ApiUnreachable as exc:
                log.warning("prunescope: %s; spooling to %s (`prunescope sync` uploads it)", exc, self.spool.path)
                self.online = False
                self._last_retry = time.monotonic()
            except TrackingError as exc:
                log.error("prunescope: the API refused the run's records: %s", exc)
                self.fatal = exc
        self._spool(epochs, points, setup, finish)

    def _send(self, epochs: list[bytes], points: list[bytes], setup: dict[str, Any]) -> None:
        assert self.transport is not None and self.run_id is not None
        for body in batch_bodies(epochs, points, setup or None):
            ack = self.transport.batch(self.run_id, body)
            if ack.get("cancel"):
                self.cancelled.set()
        self._last_contact = time.monotonic()

    def _spool(self, epochs: list[bytes], points: list[bytes], setup: dict[str, Any], finish: Any) -> None:
        lines = [spooling.line(spooling.SETUP, orjson.dumps(setup))] if setup else []
        lines += [spooling.line(spooling.EPOCH, e) for e in epochs]
        lines += [spooling.line(spooling.POINT, p) for p in points]
        if finish is not None:
            lines.append(spooling.line(spooling.FINISH, orjson.dumps(finish)))
        self.spool.append(lines)

    def _idle(self) -> None:
        """No records: keep the run alive (and learn of a cancel), or try to come back online."""
        now = time.monotonic()
        if self.fatal is not None or self.transport is None:
            return
        if self.online and now - self._last_contact >= self.keepalive_seconds:
            try:
                self._send([], [], {})
            except (ApiUnreachable, TrackingError) as exc:
                log.debug("prunescope: keepalive failed: %s", exc)
                self._last_contact = now
        elif not self.online and now - self._last_retry >= self.retry_seconds:
            self._last_retry = now
            self.reconnect()

    def reconnect(self) -> bool:
        """Upload what the spool holds beyond what was already sent; on success, send directly again."""
        if self.transport is None:
            return False
        meta = self.spool.meta
        try:
            result = spooling.upload(self.spool.path, self.transport, meta, int(meta.get("synced_bytes", 0))) \
                if self.spool.used else None
            if result is None:
                return False
        except ApiUnreachable:
            return False
        except TrackingError as exc:
            self.fatal = exc
            return False
        self.run_id = result.run_id
        self.online = True
        self._last_contact = time.monotonic()
        log.warning("prunescope: the API is back; run %s is up to date", self.run_id)
        return True

    def _finish_spool(self) -> None:
        if not self.spool.used:
            return
        if not self.online and self.fatal is None:
            self.reconnect()
        self.spool.close()
        if not self.online:
            log.warning("prunescope: records of this run are in %s; upload them with `prunescope sync %s`",
                        self.spool.path, self.spool.path)


def mask_arrays(masks: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(mask, dtype=bool) for name, mask in masks.items()}
