"""Endpoints workers report through; every one needs the worker token, and every call about a run its lease."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from backend.artifacts import ArtifactName, artifact_path
from backend.deps import (
    DatabaseDep,
    HubDep,
    SettingsDep,
    WorkerAuth,
    WritableRunDep,
    WriteSessionDep,
    after_commit,
)
from backend.errors import AppError, NotFound
from backend.reports import service
from backend.reports.bodies import ValidatedBodyRoute
from backend.reports.schemas import (
    EpochReport,
    EpochReports,
    FinishReport,
    Heartbeat,
    ReportAck,
    StartRequest,
    StartResponse,
)
from backend.runs import service as runs_service
from backend.runs.schemas import RunId
from backend.tables import Run
from prunescope.config import Settings
from prunescope.contract.status import FINISHED_STATUSES
from prunescope.contract.worker_api import LEASE_HEADER

router = APIRouter(prefix="/api/worker", tags=["worker reports"], dependencies=[WorkerAuth],
                   route_class=ValidatedBodyRoute)

LeaseDep = Annotated[str | None, Header(
    alias=LEASE_HEADER, max_length=200,
    description="The lease `start` returned; missing or superseded: 409 and nothing is written")]


class StorageUnavailable(AppError):
    """The artifact directory cannot be written just now; the worker retries."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def _release_checkpoint_if_ended(session: Session, run: Run, settings: Settings) -> None:
    """A checkpoint is kept only while the run can resume: it goes once the run has ended (after commit)."""
    if run.status in FINISHED_STATUSES:
        path = artifact_path(settings.resolved_artifact_dir, run.id, "checkpoint.pt")
        after_commit(session, lambda: path.unlink(missing_ok=True))


@router.post("/runs/{run_id}/start", response_model=StartResponse)
def start(run: WritableRunDep, body: StartRequest, session: WriteSessionDep, settings: SettingsDep) -> StartResponse:
    """Claim a run: the answer carries its config, a fresh lease, and whether to resume from the stored checkpoint."""
    has_checkpoint = artifact_path(settings.resolved_artifact_dir, run.id, "checkpoint.pt").exists()
    answer = service.start_run(session, run, body.worker, heartbeat_timeout=settings.heartbeat_timeout,
                               has_checkpoint=has_checkpoint)
    _release_checkpoint_if_ended(session, run, settings)
    return answer


@router.post("/runs/{run_id}/epochs", response_model=ReportAck)
async def report_epoch(run_id: RunId, body: EpochReport, db: DatabaseDep, hub: HubDep,
                       lease: LeaseDep = None) -> ReportAck:
    """Record one epoch with its per-layer stats and mask snapshots (idempotent on run and epoch)."""
    # One trip to the thread pool for the whole transaction (the database must not block the event loop); the
    # run's live streams wake once it has committed.
    ack = await run_in_threadpool(service.record_epochs, db, run_id, [body], lease)
    hub.notify(run_id)
    return ack


@router.post("/runs/{run_id}/epochs/batch", response_model=ReportAck)
async def report_epochs(run_id: RunId, body: EpochReports, db: DatabaseDep, hub: HubDep,
                        lease: LeaseDep = None) -> ReportAck:
    """Record several epochs in one transaction, all or none (idempotent on run and epoch): what a worker sends
    when its epochs end faster than its `report_interval`."""
    ack = await run_in_threadpool(service.record_epochs, db, run_id, body.epochs, lease)
    hub.notify(run_id)
    return ack


@router.post("/runs/{run_id}/finish", status_code=status.HTTP_204_NO_CONTENT)
def finish(run: WritableRunDep, body: FinishReport, session: WriteSessionDep, settings: SettingsDep,
           db: DatabaseDep, background: BackgroundTasks, lease: LeaseDep = None) -> None:
    """End an attempt: completed (every epoch recorded), failed (with the error), cancelled, or handed back.
    `epochs`, the attempt's last reports, are recorded first in the same transaction: all of it or none."""
    if body.epochs:
        service.record_epochs_on(session.connection(), run.id, body.epochs, lease)
        session.refresh(run)  # the progress those statements wrote
    service.finish_run(session, run, body, lease)
    _release_checkpoint_if_ended(session, run, settings)
    if run.status in FINISHED_STATUSES and runs_service.history_worth_keeping(session, run):
        background.add_task(runs_service.keep_history, db, run.id)  # after the answer, so after the commit


@router.post("/heartbeat", response_model=ReportAck)
def heartbeat(body: Heartbeat, session: WriteSessionDep, lease: LeaseDep = None) -> ReportAck:
    """A worker is alive; the answer says whether its current run should stop (a beat naming a run needs its lease)."""
    return service.heartbeat(session, body, lease)


@router.put("/runs/{run_id}/artifacts/{name}", status_code=status.HTTP_204_NO_CONTENT, openapi_extra={
    "requestBody": {"required": True, "description": "The file's bytes, streamed (a `torch.save` checkpoint or model)",
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_artifact(run_id: RunId, name: ArtifactName, request: Request, db: DatabaseDep,
                          settings: SettingsDep, lease: LeaseDep = None) -> None:
    """Store a checkpoint or the pruned model under the run's lease: checked before a byte is written,
    and again when the temporary file is renamed into place."""
    # Database work runs in the thread pool: a writer waiting for SQLite's lock on the event loop would
    # block the very loop that lets the lock's holder commit (every request stalls until the busy timeout).
    await run_in_threadpool(_check_run_lease, db, run_id, lease)
    target = artifact_path(settings.resolved_artifact_dir, run_id, name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    except OSError as exc:
        raise StorageUnavailable(f"artifact storage unavailable: {exc.strerror or exc}",
                                 headers={"Retry-After": "2"}) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in request.stream():
                handle.write(chunk)
        # The lease may have passed to another attempt while the body streamed in: re-check under the
        # run's row lock, so that a superseded upload never replaces what the new attempt relies on.
        await run_in_threadpool(_replace_under_lease, db, run_id, lease, Path(tmp), target)
    except ClientDisconnect as exc:  # a worker killed mid-upload: nothing is stored, and it is not a server error
        raise AppError("the upload was cut off before its body was complete; nothing was stored") from exc
    except OSError as exc:
        raise StorageUnavailable(f"artifact storage unavailable: {exc.strerror or exc}",
                                 headers={"Retry-After": "2"}) from exc
    finally:
        # The storage may be gone from under the temporary file too (its folder now a file, say): that must not
        # turn the 503 above into a 500.
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)


@router.get("/runs/{run_id}/artifacts/{name}", response_class=FileResponse)
def download_artifact(run_id: RunId, name: ArtifactName, db: DatabaseDep, settings: SettingsDep,
                      lease: LeaseDep = None) -> FileResponse:
    """A stored checkpoint or model, for the worker holding the run's lease (resuming it)."""
    _check_run_lease(db, run_id, lease)
    path = artifact_path(settings.resolved_artifact_dir, run_id, name)
    if not path.exists():
        raise NotFound(f"run {run_id} has no {name}")
    return FileResponse(path, media_type="application/octet-stream")


def _check_run_lease(db: DatabaseDep, run_id: int, lease: str | None) -> None:
    with db.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        service.check_lease(run, lease)


def _replace_under_lease(db: DatabaseDep, run_id: int, lease: str | None, tmp: Path, target: Path) -> None:
    """Move the upload into place while holding the run's row (and SQLite's write lock): a new attempt cannot
    take the lease in between."""
    with db.writing() as session:
        run = session.get(Run, run_id, with_for_update=True)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        service.check_lease(run, lease)
        os.replace(tmp, target)
