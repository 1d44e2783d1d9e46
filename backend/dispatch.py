"""Hands committed runs to the broker (an outbox) and notices runs whose worker went silent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from backend.db import Database
from backend.events import EventHub
from backend.runs import service as runs
from backend.tables import Run, utcnow
from backend.tracking import service as tracking
from backend.workers.repository import online_workers
from prunescope.broker import make_celery
from prunescope.config import Settings
from prunescope.contract.queue import TRAIN_TASK, queue_for
from prunescope.contract.status import ACTIVE_STATUSES

log = logging.getLogger("prunescope.dispatch")
ACTIVE = [status.value for status in ACTIVE_STATUSES]
# How often a tick looks for checkpoints to release: the look lists every run's artifact folder (0.15 CPU-s at
# 20 000 runs on this project's machine), too much for every tick (every 2 s, and on every submit), while a
# checkpoint the look catches (a run failed by the reaper, cancelled while queued, deleted during a crash) can
# wait a few minutes. A finish, a claim and a delete release their own at once.
RELEASE_SECONDS = 600.0


class Dispatcher:
    """A background thread: queue undispatched runs, requeue or fail silent ones. Safe to run `tick` directly."""

    def __init__(self, db: Database, settings: Settings, hub: EventHub) -> None:
        self.db, self.settings, self.hub = db, settings, hub
        self.celery = make_celery(settings.resolved_redis_url)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.broker_ok: bool | None = None
        self.started_at = utcnow()
        self.released_at: float | None = None  # `clock` time of the last look for checkpoints to release
        self.clock: Callable[[], float] = time.monotonic

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="prunescope-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # the loop must outlive a database hiccup; the next tick retries
                log.exception("dispatcher tick failed")
            self._wake.wait(self.settings.dispatch_interval)

    def tick(self) -> None:
        self.reap_silent_runs()
        self.requeue_lost_messages()
        self.dispatch_pending()
        if self.released_at is None or self.clock() - self.released_at >= RELEASE_SECONDS:
            self.released_at = self.clock()
            self.release_checkpoints()

    def release_checkpoints(self) -> list[int]:
        """Delete the checkpoints of runs that can no longer resume, however they ended (a finish report
        deletes its own at once; this catches runs failed by the reaper, cancelled while queued, or deleted)."""
        root = self.settings.resolved_artifact_dir / "runs"
        if not root.is_dir():
            return []
        held = {int(path.parent.name): path for path in root.glob("*/checkpoint.pt")
                if path.parent.name.isascii() and path.parent.name.isdigit()}  # not '²': int() refuses it
        if not held:
            return []
        with self.db.session() as session:
            alive = set(session.scalars(select(Run.id).where(Run.id.in_(held), Run.status.in_(ACTIVE)))
                        .all())
        released = sorted(set(held) - alive)
        for run_id in released:
            held[run_id].unlink(missing_ok=True)
        return released

    def dispatch_pending(self) -> int:
        """Send every committed, unsent queued run to its queue; stop at the first broker error."""
        with self.db.session() as session:
            pending = list(session.execute(
                select(Run.id, Run.device).where(Run.status == "queued", Run.dispatched.is_(False))
                .order_by(Run.id).limit(200)))
            gpu_online = any("gpu" in w.queues for w in online_workers(session, self.settings.heartbeat_timeout))
        sent: dict[int, str] = {}
        try:
            for run_id, device in pending:
                queue = queue_for(device, gpu_online)
                try:
                    self.celery.send_task(TRAIN_TASK, args=[run_id], queue=queue, retry=False)
                except Exception as exc:  # broker down: the run stays committed and is sent on a later tick
                    if self.broker_ok is not False:
                        log.warning("broker unreachable, %d run(s) wait: %s", len(pending) - len(sent), exc)
                    self.broker_ok = False
                    break
                self.broker_ok = True
                sent[run_id] = queue
        finally:
            # One write for everything sent (a sweep's 20 runs were 20 transactions). A crash before it sends
            # those runs again on the next start: a second message for a run that started is answered
            # `proceed: false`, as for any duplicate.
            if sent:
                with self.db.writing() as session:
                    for run in session.scalars(select(Run).where(Run.id.in_(sent))):
                        if run.status == "queued":
                            run.dispatched, run.queue, run.dispatched_at = True, sent[run.id], utcnow()
        return len(sent)

    def reap_silent_runs(self) -> None:
        """A running run whose worker stopped sending heartbeats is requeued, or fails after max_attempts."""
        timeout = timedelta(seconds=self.settings.heartbeat_timeout)
        if utcnow() - self.started_at < timeout:
            return  # heartbeats sent while this API was down went nowhere: give workers one timeout to reach it
        cutoff = utcnow() - timeout
        is_silent = (Run.status == "running", Run.last_heartbeat_at < cutoff)
        with self.db.session() as session:  # a read first: most ticks find nothing and take no write lock
            if session.scalar(select(Run.id).where(*is_silent).limit(1)) is None:
                return
        with self.db.writing() as session:
            silent = list(session.scalars(select(Run).where(*is_silent)))
            for run in silent:
                if run.kind == "tracked":  # a user's script, not a worker: nothing to requeue
                    tracking.end_silent_run(session, run, self.settings.heartbeat_timeout)
                    continue
                lost = f"worker {run.worker} sent no heartbeat for {self.settings.heartbeat_timeout:g} s"
                if run.cancel_requested:
                    runs.set_status(session, run, "cancelled", reason=f"cancelled; {lost}")
                elif run.attempts - run.handbacks >= self.settings.max_attempts:  # hand-backs are not failures
                    runs.set_status(session, run, "failed", error=f"{lost}; gave up after {run.attempts} attempts")
                else:
                    run.dispatched, run.worker = False, None
                    runs.set_status(session, run, "queued", reason=f"{lost}; requeued to resume from its checkpoint")
        for run in silent:
            self.hub.notify(run.id)
        if silent:
            self.wake()

    def requeue_lost_messages(self) -> None:
        """Runs sent long ago but never started are sent again: while their queue is empty (the broker lost them:
        a restart), or for an `auto` run on the GPU queue once no GPU worker is online (to the CPU queue: it
        waited forever for a GPU worker that went away while a CPU worker idled). A stale message a worker takes
        later is answered `proceed: false`, as any duplicate."""
        # A run sent before this API started counts at once: `prunescope up` restarts its Redis empty (it keeps
        # nothing on disk), so a run handed back at Ctrl-C waited two minutes for the next start's workers.
        long_ago = utcnow() - timedelta(seconds=self.settings.redispatch_seconds)
        cutoff = max(long_ago, self.started_at)
        with self.db.session() as session:
            stale = list(session.execute(select(Run.id, Run.queue, Run.device, Run.dispatched_at).where(
                Run.status == "queued", Run.dispatched.is_(True), Run.dispatched_at < cutoff)))
            if not stale:
                return
            gpu_online = any("gpu" in w.queues for w in online_workers(session, self.settings.heartbeat_timeout))
        empty = {queue for queue in {row[1] for row in stale} if queue and self._queue_length(queue) == 0}
        lost = [run_id for run_id, queue, _, _ in stale if queue in empty]
        # Moved only after the full wait: a GPU worker's heartbeat may not have reached a just-started API yet.
        moved = [run_id for run_id, queue, device, sent in stale if queue not in empty
                 and sent is not None and sent < long_ago and queue != queue_for(device, gpu_online)]
        if lost or moved:
            with self.db.writing() as session:
                for run in session.scalars(select(Run).where(Run.id.in_(lost + moved))):
                    run.dispatched = False
        if lost:
            log.warning("runs %s were lost by the broker; sending them again", lost)
        if moved:
            log.warning("runs %s waited on a queue no online worker takes; sending them to %s", moved,
                        queue_for("auto", gpu_online))

    def _queue_length(self, queue: str) -> int | None:
        try:
            with self.celery.connection_for_write() as conn:
                client: Any = conn.default_channel.client
                return int(client.llen(queue))
        except Exception:
            return None

    def broker_answers(self) -> bool:
        try:
            with self.celery.connection_for_write() as conn:
                # One quick try: a refused connection answers at once instead of after kombu's 2 s retry interval.
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            return True
        except Exception:
            return False
