"""`GET /api/workers`: the workers that sent a heartbeat recently."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from backend.deps import SessionDep, SettingsDep
from backend.tables import utcnow
from backend.workers.repository import online_workers


class WorkerOut(BaseModel):
    name: str
    hostname: str
    queues: list[str]
    device: str
    device_name: str
    gpu_memory_mb: float | None
    current_run_id: int | None
    started_at: datetime
    last_heartbeat: datetime
    heartbeat_age_seconds: float


class WorkerList(BaseModel):
    items: list[WorkerOut]


router = APIRouter(prefix="/api/workers", tags=["workers"])


@router.get("", response_model=WorkerList)
def list_workers(session: SessionDep, settings: SettingsDep) -> WorkerList:
    """Workers whose last heartbeat is younger than the heartbeat timeout."""
    now = utcnow()
    return WorkerList(items=[
        WorkerOut(name=w.name, hostname=w.hostname, queues=w.queues, device=w.device, device_name=w.device_name,
                  gpu_memory_mb=w.gpu_memory_mb, current_run_id=w.current_run_id, started_at=w.started_at,
                  last_heartbeat=w.last_heartbeat,
                  heartbeat_age_seconds=(now - w.last_heartbeat).total_seconds())
        for w in online_workers(session, settings.heartbeat_timeout)
    ])
