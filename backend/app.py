"""The FastAPI application: routers, the dashboard's files, migrations and the dispatcher on start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import plotly
from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from sqlalchemy import text

from backend import catalog, migrate
from backend.db import Database
from backend.dispatch import Dispatcher
from backend.events import EventHub
from backend.maskviews import endpoints as masks
from backend.reports import endpoints as reports
from backend.results import endpoints as results
from backend.runs import endpoints as runs
from backend.runs.service import RunStateError
from backend.sweeps import endpoints as sweeps
from backend.workers import endpoints as workers
from prunescope import __version__
from prunescope.config import Settings, get_settings

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# Swagger UI 5 (it reads OpenAPI 3.1) as the fastapi-offline package ships it: /docs needs no CDN.
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"
SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
PAGES = ("/", "/runs/new", "/runs/{run_id}", "/compare", "/workers")
STATIC_CACHE = "public, max-age=3600"


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
        if start_dispatcher:
            app.state.dispatcher.start()
        yield
        app.state.dispatcher.stop()
        db.dispose()

    app = FastAPI(
        title="prunescope", version=__version__, lifespan=lifespan, max_body_size=settings.max_body_bytes,
        docs_url=None, redoc_url=None,
        description="Queue dynamic-pruning runs, record every epoch's sparsity, metrics and masks, watch them live.",
    )
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.include_router(runs.router)
    app.include_router(workers.router)
    app.include_router(masks.router)
    app.include_router(catalog.router)
    app.include_router(results.router)
    app.include_router(sweeps.router)
    app.include_router(reports.router, max_body_size=settings.max_report_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The default handler echoes the whole input back; a 5 MB body must not come back in the error.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()[:50]]
        return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(RunStateError)
    async def run_state_error(_request: Request, exc: RunStateError) -> JSONResponse:
        # The run's state forbids the request (cancel a finished run, delete a running one).
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

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
        body: dict[str, Any] = {"status": "ok" if database_ok else "degraded", "version": __version__,
                                "database": database_ok, "broker": broker_ok}
        return JSONResponse(body, status_code=200 if database_ok else 503)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="prunescope API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger-ui/favicon.png")

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
        target = (FRONTEND / path).resolve()
        if FRONTEND not in target.parents or not target.is_file():
            return JSONResponse({"detail": "not found"}, status_code=404)  # type: ignore[return-value]
        return FileResponse(target, headers={"Cache-Control": STATIC_CACHE})

    def index() -> FileResponse:
        return FileResponse(FRONTEND / "index.html", headers={"Cache-Control": "no-cache"})

    for page in PAGES:
        app.add_api_route(page, index, methods=["GET"], include_in_schema=False)
    return app
