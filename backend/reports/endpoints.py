"""Endpoints workers report through; every one needs the worker token."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from backend.artifacts import ArtifactName, artifact_path
from backend.deps import DatabaseDep, HubDep, SettingsDep, WorkerAuth
from backend.reports import service
from backend.reports.schemas import EpochReport, FinishReport, Heartbeat, ReportAck, StartRequest, StartResponse
from backend.runs.schemas import RunId
from backend.tables import Run

router = APIRouter(prefix="/api/worker", tags=["worker reports"], dependencies=[WorkerAuth])


def _run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return run


def _rejected(exc: service.ReportRejected) -> HTTPException:
    return HTTPException(exc.status_code, str(exc))


@router.post("/runs/{run_id}/start", response_model=StartResponse)
def start(run_id: RunId, body: StartRequest, db: DatabaseDep, hub: HubDep, settings: SettingsDep) -> StartResponse:
    """Claim a run; the answer carries its config and whether to resume from the stored checkpoint."""
    has_checkpoint = artifact_path(settings.resolved_artifact_dir, run_id, "checkpoint.pt").exists()
    with db.writing() as session:
        answer = service.start_run(session, _run(session, run_id), body.worker,
                                   heartbeat_timeout=settings.heartbeat_timeout, has_checkpoint=has_checkpoint)
    hub.notify(run_id)
    return answer


@router.post("/runs/{run_id}/epochs", response_model=ReportAck)
def report_epoch(run_id: RunId, body: EpochReport, db: DatabaseDep, hub: HubDep) -> ReportAck:
    """Record one epoch with its per-layer stats and mask snapshots (idempotent on run and epoch)."""
    try:
        with db.writing() as session:
            ack = service.record_epoch(session, _run(session, run_id), body)
    except service.ReportRejected as exc:
        raise _rejected(exc) from exc
    hub.notify(run_id)
    return ack


@router.post("/runs/{run_id}/finish", status_code=status.HTTP_204_NO_CONTENT)
def finish(run_id: RunId, body: FinishReport, db: DatabaseDep, hub: HubDep) -> None:
    """End a run: completed (with its summary), failed (with the error) or cancelled."""
    try:
        with db.writing() as session:
            service.finish_run(session, _run(session, run_id), body)
    except service.ReportRejected as exc:
        raise _rejected(exc) from exc
    hub.notify(run_id)


@router.post("/heartbeat", response_model=ReportAck)
def heartbeat(body: Heartbeat, db: DatabaseDep) -> ReportAck:
    """A worker is alive; the answer says whether its current run should stop."""
    with db.writing() as session:
        return service.heartbeat(session, body)


@router.put("/runs/{run_id}/artifacts/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def upload_artifact(run_id: RunId, name: ArtifactName, request: Request, db: DatabaseDep,
                          settings: SettingsDep) -> None:
    """Store a checkpoint or the pruned model; written to a temporary file, then renamed into place."""
    with db.session() as session:
        _run(session, run_id)
    target = artifact_path(settings.resolved_artifact_dir, run_id, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in request.stream():
                handle.write(chunk)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


@router.get("/runs/{run_id}/artifacts/{name}", response_class=FileResponse)
def download_artifact(run_id: RunId, name: ArtifactName, settings: SettingsDep) -> FileResponse:
    """A stored checkpoint or model, for a worker resuming the run."""
    path = artifact_path(settings.resolved_artifact_dir, run_id, name)
    if not path.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no {name}")
    return FileResponse(path, media_type="application/octet-stream")
