"""Who a worker is, which run it holds (with its lease), and the heartbeat thread that keeps both known."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from prunescope.config import Settings
from prunescope.contract.worker_api import Heartbeat as HeartbeatBody
from worker.api_client import ApiRefused, ApiUnreachable, WorkerApi

log = logging.getLogger("prunescope.worker.heartbeat")
BUSY_INTERVAL = 1.0  # while a run is held: cancel lands within a second, and a short heartbeat timeout holds


@dataclass
class WorkerIdentity:
    """Who this worker is, as heartbeats tell the API."""

    name: str
    hostname: str
    queues: list[str]
    device: str  # "cpu" or "cuda": what `auto` runs on here
    device_name: str = ""

    @classmethod
    def detect(cls, queues: list[str]) -> WorkerIdentity:
        hostname = socket.gethostname()
        device, device_name = "cpu", "cpu"
        if "gpu" in queues:
            import torch

            if torch.cuda.is_available():
                device, device_name = "cuda", torch.cuda.get_device_name(0)
        return cls(name=f"{hostname}:{os.getpid()}", hostname=hostname, queues=queues, device=device,
                   device_name=device_name)

    @property
    def spool_name(self) -> str:
        """A directory name no other worker process uses, even one sharing this home."""
        return f"{self.hostname}-{os.getpid()}"


@dataclass
class ActiveRun:
    """The run this worker holds under a lease, from its claim until its last report is delivered."""

    run_id: int
    lease: str
    attempt: int
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None
    superseded: bool = False  # the API gave the run to another attempt: nothing more may be sent for it

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def let_go(self, reason: str) -> None:
        self.superseded = True
        self.request_stop(reason)


@dataclass
class WorkerState:
    """What the heartbeat thread, the training loop and the shutdown signal share."""

    run: ActiveRun | None = None
    shutting_down: bool = False
    changed: threading.Event = field(default_factory=threading.Event)

    def hold(self, run: ActiveRun) -> None:
        self.run = run
        if self.shutting_down:
            run.request_stop(SHUTDOWN)
        self.changed.set()  # the heartbeat names the run within a second, not after its idle interval

    def release(self) -> None:
        self.run = None
        self.changed.set()

    def shut_down(self) -> None:
        self.shutting_down = True
        if self.run is not None:
            self.run.request_stop(SHUTDOWN)


SHUTDOWN = "worker shutting down"


def heartbeat_body(identity: WorkerIdentity, run: ActiveRun | None) -> HeartbeatBody:
    gpu_memory_mb = None
    if identity.device == "cuda":
        import torch

        gpu_memory_mb = torch.cuda.memory_allocated() / 2**20
    from worker.engine.capabilities import worker_capabilities  # plugins load once; cached afterwards

    return HeartbeatBody(worker=identity.name, hostname=identity.hostname, queues=identity.queues,
                         device=identity.device, device_name=identity.device_name, gpu_memory_mb=gpu_memory_mb,
                         run_id=run.run_id if run is not None else None, **worker_capabilities())


class Heartbeat:
    """Beats every second while a run is held (naming it, with its lease), every `heartbeat_seconds` when idle.

    A thread of its own that needs the interpreter only for a moment per beat: measured, it keeps beating
    through `import torch`, data loading and training steps (tests/worker/test_heartbeat.py).
    """

    def __init__(self, settings: Settings, identity: WorkerIdentity, state: WorkerState,
                 api: WorkerApi | None = None) -> None:
        self.settings, self.identity, self.state = settings, identity, state
        self.api = api or WorkerApi(settings.api_url, settings.resolved_worker_token(),
                                    timeout=max(1.0, min(10.0, settings.heartbeat_timeout / 3)))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prunescope-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self.state.changed.set()
        self._thread.join(timeout=15)

    def beat(self) -> None:
        run = self.state.run
        if run is not None and run.superseded:
            run = None  # the run is no longer ours to name
        try:
            reply = self.api.heartbeat(heartbeat_body(self.identity, run), run.lease if run else None)
        except ApiRefused as exc:
            if run is not None and exc.superseded:
                log.warning("run %s is no longer held here: %s", run.run_id, exc)
                run.let_go(f"the API gave run {run.run_id} to another attempt: {exc}")
            else:
                log.warning("heartbeat refused: %s", exc)
            return
        except (ApiUnreachable, OSError) as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        except Exception:  # a beat must never end the loop
            log.exception("heartbeat failed")
            return
        if reply.cancel and run is not None:
            run.request_stop(reply.reason or "cancel requested")

    def interval(self) -> float:
        busy = self.state.run is not None
        return min(BUSY_INTERVAL, self.settings.heartbeat_seconds) if busy else self.settings.heartbeat_seconds

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.state.changed.clear()
            self.beat()
            last = time.monotonic()
            # A run held or released re-times the wait, never to less than the busy interval after the last beat:
            # an idle worker names its new run within a second, and a sweep of short runs does not send two extra
            # beats (two API writes) per run.
            while not self._stopped.is_set():
                remaining = last + self.interval() - time.monotonic()
                if remaining <= 0:
                    break
                if self.state.changed.wait(remaining):
                    self.state.changed.clear()
