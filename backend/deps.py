"""Dependencies the endpoints share: sessions, settings, the event hub, the dispatcher, the run, and tokens."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session

from backend.db import Database
from backend.dispatch import Dispatcher
from backend.errors import NotFound, Unauthorized
from backend.events import EventHub, notified_runs
from backend.runs import repository as runs_repository
from backend.runs.schemas import RunId
from backend.tables import Run
from prunescope.config import Settings

bearer = HTTPBearer(auto_error=False)
# Dependencies that only read app state are `async def`: FastAPI runs a plain `def` dependency in its thread
# pool, and a mask-grid read used to pay a dozen such hops before doing any work.
AFTER_COMMIT = "prunescope_after_commit"


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.hub
    return hub


async def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


DatabaseDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
HubDep = Annotated[EventHub, Depends(get_hub)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def get_session(db: DatabaseDep) -> Iterator[Session]:
    with db.session() as session:
        yield session


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the write session's transaction has committed (files, wake-ups)."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


def get_write_session(db: DatabaseDep, hub: HubDep) -> Iterator[Session]:
    """One write transaction per request, committed when the endpoint returns (rolled back if it raises);
    live streams of the runs it recorded events for are woken only after the commit."""
    with db.writing() as session:
        yield session
    for run_id in notified_runs(session):
        hub.notify(run_id)
    for callback in session.info.pop(AFTER_COMMIT, []):
        callback()


SessionDep = Annotated[Session, Depends(get_session)]
# scope="function": the commit happens before the response is sent, so a client that reads back sees its write.
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]


def get_run(run_id: RunId, session: SessionDep) -> Run:
    run = runs_repository.get_run(session, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def get_run_for_write(run_id: RunId, session: WriteSessionDep) -> Run:
    run = runs_repository.get_run(session, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


RunDep = Annotated[Run, Depends(get_run)]
"""The run named by the path, read in the request's session; a 404 when there is none."""
WritableRunDep = Annotated[Run, Depends(get_run_for_write)]
"""The same, loaded inside the request's write transaction."""
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def presented_token(authorization: str | None) -> str | None:
    """The token an `Authorization: Bearer …` header carries, read as HTTPBearer reads it; None without one."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if authorization and scheme.lower() == "bearer" and credentials else None


def api_token_refusal(api_token: str | None, presented: str | None) -> Unauthorized | None:
    """Why a write is refused when PRUNESCOPE_API_TOKEN is set and `presented` is not it; None when allowed."""
    if api_token and not _matches(presented, api_token):
        return Unauthorized("this endpoint needs `Authorization: Bearer <API token>`",
                            headers={"WWW-Authenticate": "Bearer"})
    return None


def worker_token_refusal(worker_token: str, presented: str | None) -> Unauthorized | None:
    """Why a worker report is refused when `presented` is not the worker token; None when allowed."""
    if not _matches(presented, worker_token):
        return Unauthorized("worker reports need `Authorization: Bearer <worker token>`",
                            headers={"WWW-Authenticate": "Bearer"})
    return None


def _matches(presented: str | None, token: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


def _credentials(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


async def require_api_token(settings: SettingsDep, credentials: Credentials) -> None:
    """Write endpoints: when PRUNESCOPE_API_TOKEN is set, a matching Bearer token is required."""
    refusal = api_token_refusal(settings.api_token, _credentials(credentials))
    if refusal is not None:
        raise refusal


async def require_worker_token(request: Request, credentials: Credentials) -> None:
    """Worker reports always need the worker token."""
    refusal = worker_token_refusal(request.app.state.worker_token, _credentials(credentials))
    if refusal is not None:
        raise refusal


ApiWrite = Depends(require_api_token)
WorkerAuth = Depends(require_worker_token)
