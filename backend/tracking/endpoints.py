"""Endpoints of tracked runs: a user's script creates a run, sends batches of records, finishes it (API token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Response, status

from backend.deps import ApiWrite, DatabaseDep, RunDep, SessionDep, WriteSessionDep
from backend.reports.bodies import ValidatedBodyRoute
from backend.runs import service as runs_service
from backend.runs.schemas import RunId
from backend.tracking import service
from backend.tracking.schemas import BatchAck, TrackedBatch, TrackedFinish, TrackedRunCreate, TrackedRunCreated
from prunescope.contract.tracking import LEASE_PATTERN, MAX_STEP, TRACKING_PREFIX
from prunescope.contract.worker_api import LEASE_HEADER

router = APIRouter(prefix=TRACKING_PREFIX, tags=["tracked runs"], route_class=ValidatedBodyRoute)
Lease = Annotated[str | None, Header(alias=LEASE_HEADER, pattern=LEASE_PATTERN,
                                     description="The lease the create call answered")]
LEASE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No tracked run with this id"},
    409: {"description": "The lease is missing or is not this run's: nothing was written"},
}


@router.post("", response_model=TrackedRunCreated, status_code=status.HTTP_201_CREATED, dependencies=[ApiWrite],
             responses={200: {"model": TrackedRunCreated, "description": "This lease had already created the run"},
                        422: {"description": "A field is invalid; `detail` names it"}})
def create(body: TrackedRunCreate, session: WriteSessionDep, response: Response) -> TrackedRunCreated:
    """Start a tracked run (status `running`); the answer's lease must accompany every later call for it."""
    created = service.create_tracked_run(session, body)
    if not created.created:
        response.status_code = status.HTTP_200_OK
    return created


@router.post("/{run_id}/batch", response_model=BatchAck, dependencies=[ApiWrite], responses=LEASE_ERRORS)
def record_batch(run_id: RunId, body: TrackedBatch, session: WriteSessionDep, lease: Lease = None) -> BatchAck:
    """Record many epochs (with per-layer stats, masks and extra scalars) and in-epoch points in one transaction.

    Idempotent: an epoch or step sent again replaces the stored one. The answer says whether to stop (cancel)."""
    return service.record_batch(session, service.tracked_run(session, run_id, lease), body)


@router.post("/{run_id}/finish", status_code=status.HTTP_204_NO_CONTENT, dependencies=[ApiWrite],
             responses=LEASE_ERRORS)
def finish(run_id: RunId, body: TrackedFinish, session: WriteSessionDep, db: DatabaseDep,
           background: BackgroundTasks, lease: Lease = None) -> None:
    """End the run: completed, failed (with the error) or cancelled; repeating the same end is a no-op."""
    run = service.tracked_run(session, run_id, lease)
    service.finish_tracked_run(session, run, body)
    if runs_service.history_worth_keeping(session, run):
        background.add_task(runs_service.keep_history, db, run_id)  # after the answer, so after the commit


@router.get("/{run_id}/points", responses={404: {"description": "No run with this id"}})
def points(run: RunDep, session: SessionDep,
           after: Annotated[int, Query(ge=-1, le=MAX_STEP, description="Only steps after this one")] = -1,
           limit: Annotated[int, Query(ge=1, le=10_000)] = 5000) -> dict[str, Any]:
    """The scalars a run logged inside its epochs (`run.log(step=...)`), by step."""
    return {"run_id": run.id, "items": service.list_points(session, run.id, after, limit)}
