"""One attempt at one run inside a worker: claim it under a lease, train it, report every epoch, finish it."""

from __future__ import annotations

import logging
import math
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from prunescope import maskcodec
from prunescope.config import Settings
from prunescope.contract import EpochRecord, RunConfig, RunSummary, WorkerOutcome, parse_run_config
from prunescope.contract.records import CONTROL_CHARACTERS
from prunescope.contract.worker_api import (
    MAX_REPORT_BATCH,
    ArtifactName,
    EpochReport,
    FinishReport,
    ReportAck,
    StartResponse,
)
from worker.api_client import ApiRefused, ApiUnreachable, WorkerApi
from worker.engine.checkpoint_slot import CheckpointSlot
from worker.heartbeat import SHUTDOWN, ActiveRun, WorkerIdentity, WorkerState
from worker.reporter import Failure, Reporter

log = logging.getLogger("prunescope.worker")
CLAIM_RETRY_SECONDS = 600.0  # the task is already off the queue: wait out an API restart rather than drop it
SHUTDOWN_PATIENCE = 15.0  # shutting down, the worker waits this long for the API before it lets the run go


class Trainer(Protocol):
    def __call__(self, config: RunConfig, *, data_dir: Path, device: str,
                 on_epoch: Callable[[EpochRecord, dict[str, np.ndarray]], None], should_stop: Callable[[], bool],
                 checkpoint_path: Path, resume: bool, checkpoint_slot: CheckpointSlot) -> RunSummary: ...


def engine_trainer() -> Trainer:
    from worker.engine.training import run_training  # torch is imported only when a run starts

    return run_training


def resolve_device(requested: str, identity: WorkerIdentity) -> str:
    if requested == "cuda" and identity.device != "cuda":
        raise RuntimeError(f"run asks for device 'cuda' but worker {identity.name} has no CUDA device")
    return identity.device if requested == "auto" else requested


class RunSession:
    """One attempt: the lease, the spool directory, the outbox, and how the attempt ended."""

    def __init__(self, run_id: int, settings: Settings, identity: WorkerIdentity, state: WorkerState,
                 api: WorkerApi, *, trainer: Callable[[], Trainer] = engine_trainer) -> None:
        self.run_id, self.settings, self.identity, self.state, self.api = run_id, settings, identity, state, api
        self.trainer = trainer
        # Each worker process spools in a directory of its own: workers sharing a home never touch each other's files.
        self.workdir = settings.resolved_artifact_dir / "worker" / identity.spool_name / f"run-{run_id}"
        self.checkpoint = self.workdir / "checkpoint.pt"  # a resumed attempt's download
        self.slot = CheckpointSlot()  # the newest epoch's checkpoint, written only to be uploaded
        self.encoder = maskcodec.MaskEncoder()
        self.active: ActiveRun | None = None
        self.reporter: Reporter | None = None
        self.last_reported_epoch = 0
        self.batch = ReportBatch()  # reports waiting for the delivery that will take them
        self.uploads = 0
        self.clock: Callable[[], float] = time.monotonic
        self.checkpoint_uploaded_at = self.clock()  # the claim: no checkpoint is due before an interval's training

    # -- the attempt ---------------------------------------------------------------------------------------------
    def run(self) -> WorkerOutcome:
        """Claim, train and finish the run; returns how this attempt ended."""
        answer = self._claim()
        if answer is None or not answer.proceed or not answer.lease:
            return WorkerOutcome.SKIPPED
        active = self.active = ActiveRun(self.run_id, answer.lease, answer.attempt)
        reporter = self.reporter = Reporter(on_failure=self._reporter_failed, name=f"prunescope-reporter-{self.run_id}")
        self.state.hold(active)  # the heartbeat names the run (with its lease) until finish is settled
        try:
            outcome, summary, error = self._train(answer)
            # The reports still waiting go in the finish (one request at the end instead of two); a hand-back's
            # go before its checkpoint upload, as during the run (the API never holds a checkpoint ahead of them).
            trailing = self.batch.steal() if outcome != WorkerOutcome.REQUEUE else []
            if outcome == WorkerOutcome.REQUEUE:
                # Hand back with the newest checkpoint, so the next claim trains no epoch again (none when no
                # epoch ended in this attempt: the API still holds the one it resumed from).
                self._upload_checkpoint()
            elif outcome == WorkerOutcome.COMPLETED and (self.workdir / "model.pt").exists():
                self._queue_upload("model.pt", self.workdir / "model.pt")  # written once: sent as it is
            outcome = self._finish(outcome, summary, error, trailing)
        finally:
            reporter.close()
            self.state.release()
            shutil.rmtree(self.workdir, ignore_errors=True)  # the spool goes whatever the outcome
        return outcome

    def _claim(self) -> StartResponse | None:
        try:
            answer = self.api.start(self.run_id, self.identity.name, retry_for=CLAIM_RETRY_SECONDS)
        except (ApiRefused, ApiUnreachable) as exc:
            log.error("run %s: could not claim it: %s", self.run_id, exc)
            return None
        if not answer.proceed:
            log.info("run %s skipped: %s", self.run_id, answer.reason)
        return answer

    def _train(self, answer: StartResponse) -> tuple[WorkerOutcome, RunSummary | None, str | None]:
        assert self.active is not None
        try:
            config = stored_config(answer.config or {})
        except (ValidationError, ValueError) as exc:
            return WorkerOutcome.FAILED, None, f"the stored config is not valid: {exc}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.checkpoint.unlink(missing_ok=True)
        try:
            resume = answer.resume and self.api.download(
                self.run_id, self.active.lease, "checkpoint.pt", self.checkpoint,
                retry_for=self.settings.report_retry_seconds)
            summary = self.trainer()(
                config, data_dir=self.settings.resolved_data_dir, device=resolve_device(config.device, self.identity),
                on_epoch=self.on_epoch, should_stop=self.active.stop.is_set, checkpoint_path=self.checkpoint,
                resume=resume, checkpoint_slot=self.slot)
        except ApiRefused as exc:
            if exc.superseded:
                self.active.let_go(str(exc))
                return WorkerOutcome.SKIPPED, None, None
            return WorkerOutcome.FAILED, None, f"the API refused the checkpoint download: {exc}"
        except Exception as exc:
            log.exception("run %s failed", self.run_id)
            tail = "".join(traceback.format_exc().splitlines(True)[-12:])
            return WorkerOutcome.FAILED, None, f"{type(exc).__name__}: {exc}\n{tail}"
        return self._outcome(summary), summary, self._failure_text()

    def _outcome(self, summary: RunSummary) -> WorkerOutcome:
        assert self.active is not None
        if self.active.superseded:
            return WorkerOutcome.SKIPPED
        if self.reporter is not None and self.reporter.failure is not None:
            return WorkerOutcome.FAILED
        if not summary.stopped:
            return WorkerOutcome.COMPLETED
        return WorkerOutcome.REQUEUE if self.active.stop_reason == SHUTDOWN else WorkerOutcome.CANCELLED

    def _failure_text(self) -> str | None:
        failure = self.reporter.failure if self.reporter is not None else None
        return f"reports to the API stopped: {failure}" if failure is not None and not failure.superseded else None

    # -- reports -------------------------------------------------------------------------------------------------
    def on_epoch(self, record: EpochRecord, masks: dict[str, np.ndarray]) -> None:
        """Queue the epoch's report; before it, when one is due, the kept checkpoint (the engine keeps epoch N's
        after this call, so the slot holds N-1, already reported): the API never holds a checkpoint ahead of its
        records, and a run resumed after a crash re-runs at most the one epoch after it, or `checkpoint_seconds`
        of training when epochs are shorter than that."""
        active, reporter = self.active, self.reporter
        assert active is not None and reporter is not None
        if active.superseded or reporter.failure is not None:
            return
        kept = self.slot.epoch
        if kept is not None and kept <= self.last_reported_epoch and self._checkpoint_due():
            self._upload_checkpoint()
        # The API, not the worker, says which attempt trained the epoch; other record fields are not reports'.
        fields = record.model_dump(include=set(EpochReport.model_fields) - {"worker", "masks"})
        report = EpochReport(**fields, worker=self.identity.name, masks=self.encoder.encode(record.epoch, masks))
        self.last_reported_epoch = record.epoch
        group = self.batch.add(report)
        if group is None:
            return  # the open group's delivery, already queued, takes it along
        lease, retry_for, interval = active.lease, self.settings.report_retry_seconds, self.settings.report_interval
        label = [f"epoch {record.epoch} report"]

        def deliver(stop: Callable[[], bool]) -> None:
            # At most one report request per `interval`: epochs that end meanwhile join this group, until a flush,
            # the run's end, a hand-back or an upload queued behind it (which closes the group: reports after it
            # go after it, so a checkpoint stays at most an epoch behind the records, as without batches).
            reporter.linger(self.batch.sent_at + interval, unless=lambda: not self.batch.is_open(group))
            for chunk in self.batch.take(group):
                label[0] = describe(chunk)
                self._on_ack(self.api.report_epochs(self.run_id, lease, chunk, retry_for=retry_for, stop=stop))
            self.batch.sent_at = time.monotonic()

        reporter.send(lambda: label[0], deliver)

    def _checkpoint_due(self) -> bool:
        """At most one checkpoint upload per `checkpoint_seconds` of training (every epoch when it is 0)."""
        now = self.clock()
        if now - self.checkpoint_uploaded_at < self.settings.checkpoint_seconds:
            return False
        self.checkpoint_uploaded_at = now
        return True

    def _upload_checkpoint(self) -> None:
        """Write the kept checkpoint to a spool file of its own and queue its upload (a newer one waiting
        replaces it); nothing when no epoch ended in this attempt."""
        spool = self._spool("checkpoint.pt")
        if self.slot.save(spool) is not None:
            self._queue_upload("checkpoint.pt", spool, key="checkpoint")

    def _spool(self, name: ArtifactName) -> Path:
        return self.workdir / f"upload-{self.uploads + 1}-{name}"

    def _queue_upload(self, name: ArtifactName, spool: Path, *, key: str | None = None) -> None:
        """Queue the upload of `spool` as the run's `name`; the file goes once delivered (or replaced)."""
        active, reporter = self.active, self.reporter
        assert active is not None and reporter is not None
        self.batch.close()  # later reports go after this upload
        self.uploads += 1
        lease, retry_for = active.lease, self.settings.report_retry_seconds

        def deliver(stop: Callable[[], bool]) -> None:
            self.api.upload(self.run_id, lease, name, spool, retry_for=retry_for, stop=stop)

        reporter.send(f"{name} upload", deliver, key=key, spool=spool)

    def _on_ack(self, ack: ReportAck) -> None:
        if ack.cancel and self.active is not None:
            self.active.request_stop(ack.reason or "cancel requested")

    def _reporter_failed(self, failure: Failure) -> None:
        assert self.active is not None
        if failure.superseded:
            self.active.let_go(str(failure))
        else:
            self.active.request_stop(f"reports to the API stopped: {failure}")

    # -- the end -------------------------------------------------------------------------------------------------
    def _finish(self, outcome: WorkerOutcome, summary: RunSummary | None, error: str | None,
                trailing: list[EpochReport] | None = None) -> WorkerOutcome:
        """Deliver what is queued, then settle the attempt with the API (all bounded), with the `trailing`
        reports that had not gone yet (recorded by the finish, all or none, before the attempt ends)."""
        active, reporter = self.active, self.reporter
        assert active is not None and reporter is not None
        if not self._flush(reporter):
            log.error("run %s: reports not delivered in time; letting the run go", self.run_id)
            reporter.abort()
            return WorkerOutcome.SKIPPED  # the API resumes it from the checkpoint it holds after the heartbeat timeout
        patience = SHUTDOWN_PATIENCE if self.state.shutting_down else self.settings.report_retry_seconds
        if active.superseded:
            log.warning("run %s was given to another attempt; this one stops without finishing it", self.run_id)
            return WorkerOutcome.SKIPPED
        if reporter.failure is not None:
            trailing = None  # the reports after a refused one are dropped, as the outbox drops them
            if outcome != WorkerOutcome.FAILED:
                outcome, error = WorkerOutcome.FAILED, self._failure_text()
        return self._send_finish(outcome, summary, error, trailing, patience)

    def _send_finish(self, outcome: WorkerOutcome, summary: RunSummary | None, error: str | None,
                     epochs: list[EpochReport] | None, patience: float) -> WorkerOutcome:
        assert self.active is not None
        report = FinishReport(worker=self.identity.name, status=outcome.value, summary=summary,
                              error=_storable(error) if error else None, epochs=epochs or None)
        try:
            self.api.finish(self.run_id, self.active.lease, report, retry_for=patience)
        except (ApiRefused, ApiUnreachable) as exc:
            if isinstance(exc, ApiRefused) and report.epochs and not exc.superseded:
                # The API refused the last reports (the whole finish with them): the run fails with its reason, as
                # when a report refused during the run stops the outbox.
                log.error("run %s: %s refused: %s", self.run_id, describe(report.epochs), exc)
                reason = f"reports to the API stopped: {describe(report.epochs)}: {exc}"
                return self._send_finish(WorkerOutcome.FAILED, None, reason, None, patience)
            log.error("run %s: finish (%s) not delivered: %s", self.run_id, outcome.value, exc)
            return WorkerOutcome.SKIPPED
        return outcome

    def _flush(self, reporter: Reporter) -> bool:
        """Wait for the outbox: up to the retry bound, or SHUTDOWN_PATIENCE once the worker is shutting down."""
        deadline = time.monotonic() + self.settings.report_retry_seconds + 5
        while not reporter.flush(timeout=0.5):
            if self.state.shutting_down:
                deadline = min(deadline, time.monotonic() + SHUTDOWN_PATIENCE)
            if time.monotonic() > deadline:
                return False
        return True


LABELS = ("name", "tags", "preset")


def stored_config(doc: dict[str, Any]) -> RunConfig:
    """A stored run's config as the engine takes it. Its labels were checked when it was submitted, by the rules
    of then: a run queued with a tab in its name before labels had to be one line must still train (it failed with
    "the stored config is not valid"); its other fields are checked as ever."""
    try:
        return parse_run_config(doc)
    except ValidationError as exc:
        if not all(error["loc"] and error["loc"][0] in LABELS for error in exc.errors()):
            raise
    one_line = {key: [_one_line(tag) for tag in value] if isinstance(value, list) else _one_line(value)
                for key, value in doc.items() if key in LABELS}
    return parse_run_config({**doc, **one_line})


def _one_line(value: Any) -> Any:
    return re.sub(f"[{CONTROL_CHARACTERS}]", " ", value) if isinstance(value, str) else value


def _storable(error: str) -> str:
    """An error text the API stores: at most 20 000 characters, no NUL (an exception's message may hold one; the
    API refuses it, and the finish with it), no lone surrogate."""
    return error.replace("\x00", "\\x00").encode("utf-8", "replace").decode("utf-8")[:20000]


def describe(reports: list[EpochReport]) -> str:
    first, last = reports[0].epoch, reports[-1].epoch
    return f"epoch {first} report" if first == last else f"epochs {first}-{last} reports"


class ReportBatch:
    """Epoch reports in groups, each delivered by one outbox item, and when the last were sent. `add` puts a
    report in the open group and returns the group when it is new (its delivery must be queued); `close` ends
    the open group (an upload is queued behind it); `take(group)` ends it too and returns its reports in
    request-sized chunks (bounded in count and mask bytes); `steal()` ends it and empties it, for the finish."""

    MAX_MASK_BYTES = 64 * 1024 * 1024  # of base64 mask data in one request (the API takes up to max_report_bytes)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[tuple[EpochReport, int]] | None = None
        self.sent_at = -math.inf

    def add(self, report: EpochReport) -> list[tuple[EpochReport, int]] | None:
        size = sum(len(mask.data) for mask in report.masks.values())
        with self._lock:
            new = self._open is None
            group = self._open = [] if self._open is None else self._open
            group.append((report, size))
            return group if new else None

    def close(self) -> None:
        with self._lock:
            self._open = None

    def steal(self) -> list[EpochReport]:
        """End the open group and take its reports away from its delivery (which then sends nothing), for the
        finish to carry. Empty when no group is open (its delivery has taken it, or none waits) or when the group
        is larger than one request (its delivery sends it in chunks)."""
        with self._lock:
            group = self._open
            if group is None or len(group) > MAX_REPORT_BATCH or sum(b for _, b in group) > self.MAX_MASK_BYTES:
                return []
            self._open = None
            reports = [report for report, _ in group]
            group.clear()
            return reports

    def is_open(self, group: list[tuple[EpochReport, int]]) -> bool:
        with self._lock:
            return self._open is group

    def take(self, group: list[tuple[EpochReport, int]]) -> list[list[EpochReport]]:
        with self._lock:
            if self._open is group:
                self._open = None
            waiting = list(group)
        chunks: list[list[EpochReport]] = []
        size = 0
        for report, bytes_ in waiting:
            if not chunks or len(chunks[-1]) == MAX_REPORT_BATCH or size + bytes_ > self.MAX_MASK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(report)
            size += bytes_
        return chunks


def execute_run(run_id: int, settings: Settings, identity: WorkerIdentity, state: WorkerState,
                api: WorkerApi | None = None) -> WorkerOutcome:
    """Train run `run_id` as one attempt; returns how it ended."""
    client = api or WorkerApi(settings.api_url, settings.resolved_worker_token())
    try:
        return RunSession(run_id, settings, identity, state, client).run()
    finally:
        if api is None:
            client.close()
