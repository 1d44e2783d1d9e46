"""Dependencies the endpoints share: the database session, settings, the live-event hub, and tokens."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from backend.db import Database
from backend.events import EventHub
from prunescope.config import Settings

bearer = HTTPBearer(auto_error=False)


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_session(request: Request) -> Iterator[Session]:
    with get_db(request).session() as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.hub
    return hub


DatabaseDep = Annotated[Database, Depends(get_db)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
HubDep = Annotated[EventHub, Depends(get_hub)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _matches(credentials: HTTPAuthorizationCredentials | None, token: str) -> bool:
    return credentials is not None and hmac.compare_digest(credentials.credentials.encode(), token.encode())


def require_api_token(request: Request, credentials: Credentials) -> None:
    """Write endpoints: when PRUNESCOPE_API_TOKEN is set, a matching Bearer token is required."""
    token = get_settings_dep(request).api_token
    if token and not _matches(credentials, token):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "this endpoint needs `Authorization: Bearer <API token>`",
                            headers={"WWW-Authenticate": "Bearer"})


def require_worker_token(request: Request, credentials: Credentials) -> None:
    """Worker reports always need the worker token."""
    token: str = request.app.state.worker_token
    if not _matches(credentials, token):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "worker reports need `Authorization: Bearer <worker token>`",
                            headers={"WWW-Authenticate": "Bearer"})


ApiWrite = Depends(require_api_token)
WorkerAuth = Depends(require_worker_token)
