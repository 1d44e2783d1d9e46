"""REST endpoints of runs: submit, list, show, cancel, epochs, and the live event stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event

from backend.artifacts import delete_run_artifacts
from backend.capabilities import check_runnable
from backend.db import Database
from backend.deps import (
    ApiWrite,
    DatabaseDep,
    DispatcherDep,
    HubDep,
    RunDep,
    SessionDep,
    SettingsDep,
    WritableRunDep,
    WriteSessionDep,
    after_commit,
)
from backend.errors import NotFound
from backend.events import events_after
from backend.runs import repository, service
from backend.runs.schemas import MAX_ID, NO_NUL, EpochColumns, EpochList, RunDetail, RunId, RunList, RunPatch
from backend.runs.service import HistoryLayout
from prunescope.contract.config import Device, RunConfig
from prunescope.contract.status import FINISHED_STATUSES as FINISHED
from prunescope.contract.status import RunStatus

router = APIRouter(prefix="/api/runs", tags=["runs"])
SORT_PATTERN = "^-?(" + "|".join(repository.SORTABLE) + ")$"

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No run with this id"}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunDetail, dependencies=[ApiWrite],
             responses={422: {"description": "The config is invalid; `detail` names each bad field"},
                        413: {"description": "Body too large"}})
def submit_run(config: RunConfig, session: WriteSessionDep, dispatcher: DispatcherDep,
               settings: SettingsDep) -> RunDetail:
    """Submit a run: it is committed as `queued` first, then handed to the queue.

    A model or dataset that is neither built in nor offered by an online worker, or layer patterns that
    select no prunable layer of the model, are a 422 naming what is available.
    """
    check_runnable(config, session, settings.heartbeat_timeout)
    run = service.create_run(session, config)
    after_commit(session, dispatcher.wake)
    return service.to_detail(run)


@router.get("", response_model=RunList)
def list_runs(
    session: SessionDep,
    status_: Annotated[list[RunStatus] | None, Query(alias="status")] = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description="Text in the name or strategy")] = None,
    preset: Annotated[str | None, Query(max_length=64, pattern=NO_NUL, description="A run's preset")] = None,
    strategy: Annotated[str | None, Query(max_length=100, pattern=NO_NUL,
                                          description="e.g. `magnitude/unstructured+splice`")] = None,
    device: Annotated[Device | None, Query()] = None,
    model: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    dataset: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    sweep_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    min_sparsity: Annotated[float | None, Query(ge=0, le=1, description="Newest/final sparsity ≥ this")] = None,
    max_sparsity: Annotated[float | None, Query(ge=0, le=1)] = None,
    min_acc: Annotated[float | None, Query(ge=0, le=1, description="Newest/final test accuracy ≥ this")] = None,
    max_acc: Annotated[float | None, Query(ge=0, le=1)] = None,
    sort: Annotated[str, Query(pattern=SORT_PATTERN, description="A column, `-` first for descending")] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> RunList:
    """Runs, newest first by default, with filters (all combined with AND) and pagination."""
    filters = repository.RunFilters(
        statuses=status_ or (), tag=tag, text=q, preset=preset, strategy=strategy, device=device, model=model,
        dataset=dataset, sweep_id=sweep_id, min_sparsity=min_sparsity, max_sparsity=max_sparsity,
        min_acc=min_acc, max_acc=max_acc)
    runs, total = repository.list_runs(session, filters, sort=sort, limit=limit, offset=offset)
    return RunList(items=[service.to_summary(r) for r in runs], total=total)


@router.get("/{run_id}", response_model=RunDetail, responses=NOT_FOUND)
def get_run(run: RunDep) -> RunDetail:
    """A run's config, status, timestamps, progress, summary and error."""
    return service.to_detail(run)


@router.patch("/{run_id}", response_model=RunDetail, dependencies=[ApiWrite],
              responses={**NOT_FOUND, 422: {"description": "A field is invalid or null; `detail` names it"}})
def patch_run(patch: RunPatch, run: WritableRunDep) -> RunDetail:
    """Rename a run, or change its tags or notes; fields left out keep their values."""
    service.update_run(run, patch)
    return service.to_detail(run)


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[ApiWrite],
               responses={**NOT_FOUND, 409: {"description": "The run is queued or running: cancel it first"}})
def delete_run(run: WritableRunDep, session: WriteSessionDep, settings: SettingsDep) -> None:
    """Delete a finished run with its epochs, mask snapshots, events and artifact files."""
    run_id = run.id
    service.delete_run(session, run)
    # Files go after the commit: a failed delete must not leave a run whose model is gone.
    after_commit(session, lambda: delete_run_artifacts(settings.resolved_artifact_dir, run_id))


@router.post("/{run_id}/cancel", response_model=RunDetail, dependencies=[ApiWrite],
             responses={**NOT_FOUND, 409: {"description": "The run has already finished"}})
def cancel_run(run: WritableRunDep, session: WriteSessionDep) -> RunDetail:
    """Cancel a queued run at once, or ask a running run's worker to stop (within seconds)."""
    service.cancel_run(session, run)
    return service.to_detail(run)


@router.get("/{run_id}/epochs", response_model=EpochList | EpochColumns, responses=NOT_FOUND)
async def list_epochs(
    run_id: RunId, db: DatabaseDep, request: Request,
    layout: Annotated[HistoryLayout, Query(description=(
        "`records` (default): one object per epoch (`EpochList`); `columns`: one array per series "
        "(`EpochColumns`), the same values, a fraction of the parsing"))] = "records",
) -> Response:
    """Every recorded epoch with its per-layer stats, at full fidelity. A large run's answers are kept when it
    ends, so its first read after that is one stored row; a live run's is built from its epochs, then cached."""
    def history() -> tuple[bytes, dict[str, str]]:
        with db.session() as session:  # one read transaction
            answer = service.history_body(session, db.url, run_id, request.headers.get("accept-encoding", ""),
                                          layout)
            if answer is None:
                raise NotFound(f"run {run_id} not found")
            return answer

    # One trip to the thread pool for the queries, the serialising and the compressing (megabytes, at 1000 epochs).
    body, headers = await run_in_threadpool(history)
    return Response(body, media_type="application/json", headers=headers)


def _load_events(db: Database, run_id: int, after: int) -> tuple[list[tuple[int, str, str]], bool]:
    with db.session() as session:
        rows = events_after(session, run_id, after)
        run = repository.get_run(session, run_id)
        finished = run is None or run.status in FINISHED
        return [(e.id, e.kind, json.dumps(e.data)) for e in rows], finished


@router.get("/{run_id}/events", responses={**NOT_FOUND, 200: {"content": {"text/event-stream": {}},
            "description": "`epoch` and `status` events; ids resume with `Last-Event-ID`"}})
async def stream_events(
    run_id: RunId, request: Request, db: DatabaseDep, hub: HubDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Resume after this event id")] = None,
) -> StreamingResponse:
    """Server-Sent Events of a run; the stream ends once the run has finished and everything is sent."""
    def exists() -> bool:
        with db.session() as session:
            return repository.get_run(session, run_id) is not None

    if not await run_in_threadpool(exists):
        raise NotFound(f"run {run_id} not found")
    start = after or 0
    resume = (last_event_id or "").strip()
    # ASCII digits only: str.isdigit() accepts '²', which int() refuses; a longer number than MAX_ID has is past it.
    if resume and resume.isascii() and resume.isdigit():
        digits = resume.lstrip("0") or "0"
        start = MAX_ID if len(digits) > len(str(MAX_ID)) else min(int(digits), MAX_ID)

    async def stream() -> AsyncIterator[bytes]:
        last = start
        idle = 0.0
        yield format_sse_event(retry=1000, comment="prunescope live stream")
        async def load(after: int) -> tuple[list[tuple[int, str, str]], bool]:
            return await run_in_threadpool(_load_events, db, run_id, after)

        with hub.subscribe(run_id) as sub:
            while True:
                sub.clear()
                # The run's shared feed answers every stream that has caught up with it; one behind it reads alone.
                events, finished = await sub.feed.read(last, load) or await load(last)
                for event_id, kind, data in events:
                    last = event_id
                    yield format_sse_event(data_str=data, event=kind, id=str(event_id))
                if events:
                    idle = 0.0
                    continue
                if finished or await request.is_disconnected():
                    return
                await sub.wait(timeout=1.0)
                idle += 1.0
                if idle >= 15.0:
                    idle = 0.0
                    yield KEEPALIVE_COMMENT

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
