"""Runs one queued run inside a worker: claim it, train it, report every epoch and its masks, finish it."""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prunescope import maskcodec
from prunescope.config import Settings
from worker.reporter import ApiClient, Reporter, ReportError

log = logging.getLogger("prunescope.worker")
SHUTDOWN = "worker shutting down"


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


@dataclass
class WorkerState:
    """What the heartbeat thread and the training loop share."""

    run_id: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()


def heartbeat_body(identity: WorkerIdentity, state: WorkerState) -> dict[str, Any]:
    body: dict[str, Any] = {"worker": identity.name, "hostname": identity.hostname, "queues": identity.queues,
                            "device": identity.device, "device_name": identity.device_name, "run_id": state.run_id}
    if identity.device == "cuda":
        import torch

        body["gpu_memory_mb"] = torch.cuda.memory_allocated() / 2**20
    return body


class Heartbeat:
    """Tells the API this worker is alive, every second during a run (so cancel lands fast), less when idle."""

    def __init__(self, settings: Settings, identity: WorkerIdentity, state: WorkerState) -> None:
        self.settings, self.identity, self.state = settings, identity, state
        self.client = ApiClient(settings.api_url, settings.resolved_worker_token(), timeout=10)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prunescope-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def beat(self) -> None:
        try:
            reply = self.client.request("POST", "/api/worker/heartbeat", retry_for=0,
                                        json=heartbeat_body(self.identity, self.state)).json()
        except (ConnectionError, ReportError) as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        if reply.get("cancel") and self.state.run_id is not None:
            self.state.request_stop(reply.get("reason") or "cancel requested")

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.beat()
            busy = self.state.run_id is not None
            interval = min(1.0, self.settings.heartbeat_seconds) if busy else self.settings.heartbeat_seconds
            self._stopped.wait(interval)


class MaskEncoder:
    """Encodes each epoch's masks as deltas against the previous epoch, with a key frame every few epochs."""

    def __init__(self) -> None:
        self.previous: dict[str, np.ndarray] = {}
        self.previous_epoch: int | None = None

    def encode(self, epoch: int, layer_masks: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        chained = self.previous_epoch == epoch - 1 and epoch % maskcodec.KEYFRAME_EVERY != 1
        out = {}
        for name, mask in layer_masks.items():
            base = self.previous.get(name) if chained else None
            out[name] = maskcodec.encode(mask, base).to_json()
        self.previous = {name: np.array(mask, dtype=bool, copy=True) for name, mask in layer_masks.items()}
        self.previous_epoch = epoch
        return out


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a diverged loss is reported as null rather than refused."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def resolve_device(requested: str, identity: WorkerIdentity) -> str:
    if requested == "cuda" and identity.device != "cuda":
        raise RuntimeError(f"run asks for device 'cuda' but worker {identity.name} has no CUDA device")
    return identity.device if requested == "auto" else requested


def execute_run(run_id: int, settings: Settings, identity: WorkerIdentity, state: WorkerState) -> str:
    """Train run `run_id` end to end; returns how it ended ('completed', 'failed', 'cancelled', or 'skipped')."""
    client = ApiClient(settings.api_url, settings.resolved_worker_token())
    base = f"/api/worker/runs/{run_id}"
    try:
        answer = client.request("POST", f"{base}/start", json={"worker": identity.name}, retry_for=600).json()
    except (ConnectionError, ReportError) as exc:
        log.error("run %s: could not claim it: %s", run_id, exc)
        return "skipped"
    if not answer["proceed"]:
        log.info("run %s skipped: %s", run_id, answer.get("reason"))
        return "skipped"

    state.run_id, state.stop_reason = run_id, None
    state.stop.clear()
    workdir = settings.resolved_artifact_dir / "worker" / f"run-{run_id}"
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = workdir / "checkpoint.pt"
    reassigned = threading.Event()

    def refused(exc: ReportError) -> None:
        if exc.status_code == 409:  # the API gave the run to someone else, or it has ended
            reassigned.set()
            state.request_stop(f"API no longer assigns this run here: {exc}")

    reporter = Reporter(client, on_refused=refused)
    encoder = MaskEncoder()

    def on_reply(reply: dict[str, Any]) -> None:
        if reply.get("cancel"):
            state.request_stop(reply.get("reason") or "cancel requested")

    def on_epoch(record: dict[str, Any]) -> None:
        layer_masks = record.pop("masks", {}) or {}
        body = {**finite(record), "worker": identity.name, "masks": encoder.encode(record["epoch"], layer_masks)}
        reporter.send(f"{base}/epochs", body, on_reply=on_reply)
        if checkpoint.exists():
            # The engine writes epoch N's checkpoint after this callback, so the file holds epoch N-1: the
            # API gets it after epoch N's report and never holds a checkpoint ahead of its recorded epochs.
            # A run resumed elsewhere re-runs (and re-reports, idempotently) at most one epoch.
            spool = workdir / f"upload-checkpoint-{record['epoch']}.pt"
            shutil.copyfile(checkpoint, spool)
            reporter.upload(f"{base}/artifacts/checkpoint.pt", spool, latest_only=True)

    outcome, summary, error = "failed", None, None
    try:
        resume = bool(answer.get("resume"))
        if resume:
            _download(client, f"{base}/artifacts/checkpoint.pt", checkpoint)
        else:
            checkpoint.unlink(missing_ok=True)
        from worker.engine.training import run_training  # torch is imported only when a run starts

        config = answer["config"]
        summary = run_training(
            config, data_dir=settings.resolved_data_dir, device=resolve_device(config.get("device", "auto"), identity),
            on_epoch=on_epoch, should_stop=state.stop.is_set, checkpoint_path=checkpoint, resume=resume,
        )
        if summary.get("stopped"):
            outcome = "requeue" if state.stop_reason == SHUTDOWN else "cancelled"
        else:
            outcome = "completed"
        model = workdir / "model.pt"
        if outcome == "completed" and model.exists():
            reporter.upload(f"{base}/artifacts/model.pt", model)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc().splitlines(True)[-12:])
        log.exception("run %s failed", run_id)
    finally:
        state.run_id = None
    # Shutting down, the worker waits a bounded time for the API; a run it could not hand back is
    # noticed by the heartbeat timeout and resumed from the checkpoint the API already holds.
    patience = 15.0 if state.stop_reason == SHUTDOWN else float("inf")
    reporter.flush(timeout=None if patience == float("inf") else patience)
    if not reassigned.is_set():
        body = {"worker": identity.name, "status": outcome, "summary": summary, "error": error}
        try:
            client.request("POST", f"{base}/finish", json=body, retry_for=patience)
        except (ReportError, ConnectionError) as exc:
            log.error("run %s: finish not delivered: %s", run_id, exc)
    reporter.close()
    client.close()
    if outcome == "completed":
        shutil.rmtree(workdir, ignore_errors=True)
    return outcome if not reassigned.is_set() else "skipped"


def _download(client: ApiClient, path: str, target: Path) -> None:
    response = client.request("GET", path, retry_for=600)
    tmp = target.with_suffix(".download")
    tmp.write_bytes(response.content)
    os.replace(tmp, target)
