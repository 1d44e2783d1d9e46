"""Sweep endpoints: create a grid of runs at once, list sweeps, and follow one's progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from backend.capabilities import online_offer
from backend.deps import ApiWrite, DispatcherDep, SessionDep, SettingsDep, WriteSessionDep, after_commit
from backend.errors import NotFound
from backend.runs.schemas import MAX_ID
from backend.sweeps import repository, service
from backend.sweeps.schemas import SweepCreate, SweepDetail, SweepList

router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No sweep with this id"}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SweepDetail, dependencies=[ApiWrite],
             responses={422: {"description": "Too many combinations, or a combination is not a valid config: "
                                             "each `detail` entry names the combination and the field"},
                        413: {"description": "Body too large"}})
def create_sweep(body: SweepCreate, session: WriteSessionDep, dispatcher: DispatcherDep,
                 settings: SettingsDep) -> SweepDetail:
    """Create one queued run per grid combination, all in one transaction, after validating every one."""
    sweep = service.create_sweep(session, body, online_offer(session, settings.heartbeat_timeout))
    after_commit(session, dispatcher.wake)
    return service.detail(session, sweep)


@router.get("", response_model=SweepList)
def list_sweeps(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> SweepList:
    """Sweeps, newest first, each with its runs' status counts and progress."""
    sweeps, total = repository.list_sweeps(session, limit=limit, offset=offset)
    return SweepList(items=service.summaries(session, sweeps), total=total)


@router.get("/{sweep_id}", response_model=SweepDetail, responses=NOT_FOUND)
def get_sweep(sweep_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep) -> SweepDetail:
    """A sweep's grid, its runs with their progress, and its best run so far."""
    sweep = repository.get_sweep(session, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found")
    return service.detail(session, sweep)


@router.post("/{sweep_id}/cancel", response_model=SweepDetail, dependencies=[ApiWrite], responses=NOT_FOUND)
def cancel_sweep(sweep_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: WriteSessionDep) -> SweepDetail:
    """Cancel every queued or running run of the sweep (finished runs stay as they are)."""
    sweep = repository.get_sweep(session, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found")
    service.cancel_sweep(session, sweep)
    return service.detail(session, sweep)
