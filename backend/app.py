"""The FastAPI application: routers, the dashboard's files, migrations and the dispatcher on start."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import plotly
from fastapi import Depends, FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from backend import catalog, migrate
from backend.db import Database
from backend.dispatch import Dispatcher
from backend.errors import AppError
from backend.events import EventHub
from backend.maskviews import endpoints as masks
from backend.openapi_refusals import document_refusals
from backend.reports import endpoints as reports
from backend.responses import json_safe
from backend.results import endpoints as results
from backend.runs import endpoints as runs
from backend.security import (
    CONTENT_SECURITY_POLICY,
    WORKER_PREFIX,
    JsonTooLarge,
    SecurityMiddleware,
    TokenGate,
    allowed_hosts,
    reject_unsafe_json,
    too_large,
)
from backend.sweeps import endpoints as sweeps
from backend.timeouts import BodyTimeoutMiddleware
from backend.tracking import endpoints as tracking
from backend.workers import endpoints as workers
from prunescope import __version__
from prunescope.config import Settings, get_settings
from prunescope.contract.tracking import TRACKING_PREFIX

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# Swagger UI 5 (it reads OpenAPI 3.1) as the fastapi-offline package ships it: /docs needs no CDN.
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"
SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
PAGES = ("/", "/runs/new", "/runs/{run_id}", "/compare", "/workers", "/sweeps", "/sweeps/{sweep_id}")
STATIC_CACHE = "public, max-age=3600"


class App(FastAPI):
    """FastAPI with its body limit's 413 answered in JSON (the limit sits outside every user middleware)."""

    def build_middleware_stack(self) -> ASGIApp:
        return JsonTooLarge(super().build_middleware_stack(), setting_for=body_limit_setting)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:  # built once: with every write's shared refusals (401/403/409/413/415)
            self.openapi_schema = document_refusals(super().openapi(), self.routes)
        return self.openapi_schema


def body_limit_setting(path: str) -> str:
    """The setting that bounds request bodies on `path` (worker reports and tracked batches carry masks)."""
    return ("PRUNESCOPE_MAX_REPORT_BYTES" if path.startswith((WORKER_PREFIX, TRACKING_PREFIX))
            else "PRUNESCOPE_MAX_BODY_BYTES")


def create_app(settings: Settings | None = None, *, start_dispatcher: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        await run_in_threadpool(migrate.upgrade, db)
        app.state.db = db
        app.state.settings = settings
        app.state.hub = EventHub()
        app.state.worker_token = settings.resolved_worker_token()
        app.state.dispatcher = Dispatcher(db, settings, app.state.hub)
        app.state.artifact_size = DirectorySize(settings.resolved_artifact_dir)
        if start_dispatcher:
            app.state.dispatcher.start()
        yield
        app.state.dispatcher.stop()
        db.dispose()

    app = App(
        title="prunescope", version=__version__, lifespan=lifespan, max_body_size=settings.max_body_bytes,
        docs_url=None, redoc_url=None, dependencies=[Depends(reject_unsafe_json)],
        description="Queue dynamic-pruning runs, record every epoch's sparsity, metrics and masks, watch them live.",
    )
    # Level 5, not Starlette's 9: a third of the CPU for a few % larger bodies (a mask grid read spent more
    # time compressing than computing).
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    app.add_middleware(BodyTimeoutMiddleware, seconds=settings.body_timeout)
    app.add_middleware(TokenGate)  # inside SecurityMiddleware: its 401s carry the security headers
    hosts = settings.allowed_hosts.split(",") if settings.allowed_hosts is not None else None
    app.add_middleware(SecurityMiddleware, hosts=allowed_hosts(hosts, settings.host))
    app.include_router(runs.router)
    app.include_router(workers.router)
    app.include_router(masks.router)
    app.include_router(catalog.router)
    app.include_router(results.router)
    app.include_router(sweeps.router)
    app.include_router(reports.router, max_body_size=settings.max_report_bytes)
    app.include_router(tracking.router, max_body_size=settings.max_report_bytes)  # batches carry masks

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The default handler echoes the whole input back; a 5 MB body must not come back in the error.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()[:50]]
        return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        # The one place errors become responses: services and dependencies just raise.
        return JSONResponse({"detail": json_safe(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/api/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        """200 when the API and its database answer; says whether the broker does."""
        db: Database = request.app.state.db

        def database_answers() -> bool:
            try:
                with db.session() as session:
                    session.execute(text("SELECT 1"))
                return True
            except Exception:
                return False

        database_ok = await run_in_threadpool(database_answers)
        broker_ok = await run_in_threadpool(request.app.state.dispatcher.broker_answers)
        artifact_bytes = await run_in_threadpool(request.app.state.artifact_size.measured)
        body: dict[str, Any] = {"status": "ok" if database_ok else "degraded", "version": __version__,
                                "database": database_ok, "broker": broker_ok, "artifact_bytes": artifact_bytes}
        return JSONResponse(body, status_code=200 if database_ok else 503)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="prunescope API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger-ui/favicon.png")
        page.headers["Content-Security-Policy"] = with_inline_scripts(CONTENT_SECURITY_POLICY, bytes(page.body))
        return page

    @app.get("/static/swagger-ui/{name}", include_in_schema=False)
    def swagger_ui(name: str) -> FileResponse:
        if name not in SWAGGER_FILES:
            return JSONResponse({"detail": "not found"}, status_code=404)  # type: ignore[return-value]
        return FileResponse(SWAGGER_UI / name, media_type=SWAGGER_FILES[name], headers={"Cache-Control": STATIC_CACHE})

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": STATIC_CACHE})

    @app.get("/static/{path:path}", include_in_schema=False)
    def static(path: str) -> FileResponse:
        if "\x00" in path:  # the file system refuses NUL; to a client it is just a file that does not exist
            return JSONResponse({"detail": "not found"}, status_code=404)  # type: ignore[return-value]
        target = (FRONTEND / path).resolve()
        if FRONTEND not in target.parents or not target.is_file():
            return JSONResponse({"detail": "not found"}, status_code=404)  # type: ignore[return-value]
        return FileResponse(target, headers={"Cache-Control": STATIC_CACHE})

    def index() -> FileResponse:
        return FileResponse(FRONTEND / "index.html", headers={"Cache-Control": "no-cache"})

    for page in PAGES:
        app.add_api_route(page, index, methods=["GET"], include_in_schema=False)

    @app.exception_handler(StarletteHTTPException)
    async def unknown_page(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser asking for an unknown page gets the dashboard with a 404 (its router draws the "not found"
        # page), not a JSON body; API and static paths keep their JSON answers.
        if (exc.status_code == status.HTTP_404_NOT_FOUND and request.method == "GET"
                and not request.url.path.startswith(("/api/", "/static/"))
                and "text/html" in request.headers.get("accept", "")):
            return FileResponse(FRONTEND / "index.html", status_code=404, headers={"Cache-Control": "no-cache"})
        if exc.status_code == status.HTTP_413_CONTENT_TOO_LARGE:  # the body limit tripped while a route read it
            return JSONResponse({"detail": too_large(request.scope, body_limit_setting)}, status_code=413)
        return await http_exception_handler(request, exc)

    return app


INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def with_inline_scripts(policy: str, html: bytes) -> str:
    """The policy, allowing exactly the inline scripts of this page by their hashes (Swagger UI's start-up)."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                      for m in INLINE_SCRIPT.findall(html))
    return policy.replace("script-src 'self'", f"script-src 'self' {hashes}") if hashes else policy


class DirectorySize:
    """`directory_bytes(root)`, measured at most once per `max_age` seconds: the walk stats every artifact (0.34
    CPU-s at 20 000 runs here, ~1.7 s at 100 000), and a deployment's health check asks every 10 s."""

    def __init__(self, root: Path, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.root, self.max_age, self.clock = root, max_age, clock
        self.value: int | None = None
        self.measured_at = 0.0

    def measured(self) -> int:
        if self.value is None or self.clock() - self.measured_at >= self.max_age:
            self.value, self.measured_at = directory_bytes(self.root), self.clock()
        return self.value


def directory_bytes(root: Path) -> int:
    """The bytes of every file under `root` (0 when it does not exist yet)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:  # removed while we walked: it takes no space any more
                continue
    return total
