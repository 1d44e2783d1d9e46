"""Request guards every response passes through: allowed Host, write intent (same origin, JSON), tokens before
bodies, security headers."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import orjson
from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.routing import BaseRoute, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.deps import (
    api_token_refusal,
    presented_token,
    require_api_token,
    require_worker_token,
    worker_token_refusal,
)
from backend.errors import Invalid, Unauthorized

# Plotly draws with inline style attributes (d3 `.attr("style", …)`), so styles need 'unsafe-inline'; scripts
# never do: the dashboard has no inline script and no eval.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Workers talk to these with the worker token and upload artifacts as octet streams; browsers never do.
WORKER_PREFIX = "/api/worker/"
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
# Bodies larger than this are checked for NaN/Infinity in a worker thread, not on the event loop.
THREAD_PARSE_BYTES = 1 << 20


def allowed_hosts(configured: Iterable[str] | None, bind_host: str) -> frozenset[str] | None:
    """Host names requests may name (lower case, no port); None allows any (`*`, or a wildcard bind unset)."""
    if configured is not None:
        hosts = {h.strip().lower() for h in configured if h.strip()}
        return None if "*" in hosts else frozenset(hosts)
    if bind_host in WILDCARD_BINDS:
        return None  # listening on every interface: the operator names the hosts (PRUNESCOPE_ALLOWED_HOSTS)
    return frozenset({"127.0.0.1", "localhost", "::1", bind_host.lower()})


def host_name(host: str) -> str:
    """`example.org:8000` -> `example.org`; `[::1]:8000` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _refusal(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"detail": message}).encode()


class SecurityMiddleware:
    """Refuses requests for other hosts (400), writes from other origins (403) or with non-JSON bodies (415),
    and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str] | None) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is not None:
            status, body = refusal
            await self._secured(send)({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, self._secured(send))

    def check(self, scope: Scope) -> tuple[int, bytes] | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return _refusal(400, "this server does not answer for that Host (see PRUNESCOPE_ALLOWED_HOSTS)")
        if scope["method"] in SAFE_METHODS or scope["path"].startswith(WORKER_PREFIX):
            return None
        # A browser marks requests another site makes; forms and fetches from other origins carry Origin.
        if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            return _refusal(403, "cross-site requests cannot change anything")
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or not parts.netloc or parts.netloc.lower() != host.lower():
                return _refusal(403, f"requests from {origin} cannot change anything here")
        content_type = headers.get("content-type")
        has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
        if content_type is not None:
            media = content_type.split(";", 1)[0].strip().lower()
            if media != "application/json":
                return _refusal(415, "write requests take `Content-Type: application/json` bodies only")
        elif has_body:
            return _refusal(415, "write requests take `Content-Type: application/json` bodies only")
        return None

    @staticmethod
    def _secured(send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        return send_with_headers


TOKEN_CHECKS = (require_api_token, require_worker_token)


@dataclass(frozen=True)
class TokenRule:
    """A route as the token gate sees it: the writes it answers and the token dependencies it declares."""

    path: re.Pattern[str]
    methods: frozenset[str]
    checks: frozenset[Callable[..., Any]]
    path_format: str  # as the OpenAPI document names it (`/api/runs/{run_id}`)


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from dependency_calls(dependency)


def token_rules(routes: Iterable[BaseRoute]) -> list[TokenRule]:
    """Every route that answers writes, in the router's order, with the token dependencies it declares (router
    dependencies included): the gate asks exactly what the route's own dependencies will ask."""
    rules = []
    for context in iter_route_contexts(list(routes)):
        dependant, path = getattr(context, "dependant", None), getattr(context, "path_regex", None)
        path_format = getattr(context, "path_format", None)
        methods = frozenset(getattr(context, "methods", None) or ()) - SAFE_METHODS
        if isinstance(dependant, Dependant) and isinstance(path, re.Pattern) and isinstance(path_format, str) \
                and methods:
            checks = frozenset(call for call in dependency_calls(dependant) if call in TOKEN_CHECKS)
            rules.append(TokenRule(path, methods, checks, path_format))
    return rules


def token_refusal(scope: Scope, rules: list[TokenRule]) -> Unauthorized | None:
    """The 401 a write gets from its route's token dependency (`ApiWrite`, `WorkerAuth`), decided from its
    headers alone: the same check, made before the body is read. None when the write may go on to its route."""
    if scope["method"] in SAFE_METHODS:
        return None
    state = getattr(scope.get("app"), "state", None)
    settings, worker_token = getattr(state, "settings", None), getattr(state, "worker_token", None)
    if settings is None or worker_token is None:  # not started: the route's own dependencies decide
        return None
    path = get_route_path(scope)
    rule = next((r for r in rules if scope["method"] in r.methods and r.path.match(path)), None)
    if rule is None:
        return None
    presented = presented_token(Headers(scope=scope).get("authorization"))
    if require_worker_token in rule.checks:
        refusal = worker_token_refusal(worker_token, presented)
        if refusal is not None:
            return refusal
    return api_token_refusal(settings.api_token, presented) if require_api_token in rule.checks else None


class TokenGate:
    """Refuses a write that lacks its route's token (401) before reading any of its body: FastAPI reads and parses
    a body before the route's dependencies run, so a client without a token could otherwise make the API hold
    and parse hundreds of megabytes. The routes' own token dependencies still run after it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.rules: list[TokenRule] | None = None  # read from the app's routes at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = None
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            if self.rules is None:
                self.rules = token_rules(getattr(scope.get("app"), "routes", ()))
            refusal = token_refusal(scope, self.rules)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": refusal.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"),
                   *((k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items())]
        await send({"type": "http.response.start", "status": refusal.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _NotJson:
    """Where json.loads met NaN or ±Infinity, or a number too large for a double (1e400): kept as a marker so
    that the error can name the field."""

    def __init__(self, name: str, problem: str = "is not a number JSON allows") -> None:
        self.message = f"{name[:40]} {problem}"


def _finite_or_marker(text: str) -> float | _NotJson:
    number = float(text)
    return number if math.isfinite(number) else _NotJson(text, "is beyond a double's range (it would be infinite)")


def _first_problem(value: Any, loc: list[str | int]) -> tuple[list[str | int], str] | None:
    if isinstance(value, _NotJson):
        return loc, value.message
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return loc, "text holds a lone surrogate (not Unicode)"
        return None
    items: Iterable[tuple[str | int, Any]] = ()
    if isinstance(value, dict):
        for key in value:
            found = _first_problem(key, loc)
            if found:
                return found
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    for key, child in items:
        found = _first_problem(child, [*loc, key])
        if found:
            return found
    return None


def unsafe_json_problem(body: bytes) -> tuple[list[str | int], str] | None:
    """Where a JSON body holds NaN, ±Infinity, a number beyond a double (1e400 would become inf) or a lone
    surrogate, and what it is; None when it holds none (or is not JSON at all)."""
    try:
        orjson.loads(body)
        return None  # orjson refuses NaN, ±Infinity, 1e999 and lone surrogates: a body it parses holds none of them
    except orjson.JSONDecodeError:
        pass  # find what it refused below (or leave malformed JSON to FastAPI's usual 422)
    try:
        document = json.loads(body, parse_constant=_NotJson, parse_float=_finite_or_marker)
    except (ValueError, RecursionError):
        return None  # malformed JSON (or nested past Python's limit): FastAPI's own parsing answers it
    try:
        return _first_problem(document, ["body"])
    except RecursionError:
        return ["body"], "JSON nested too deeply"


async def reject_unsafe_json(request: Request) -> None:
    """Every JSON body: NaN and ±Infinity (not JSON), numbers that overflow to them, and lone surrogates (not
    Unicode text) get a 422 before any endpoint sees them: they would otherwise be stored (as null, or not at
    all) and break every later read of what holds them."""
    if request.method in SAFE_METHODS or "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()  # cached: FastAPI parses the same bytes afterwards
    if not body:
        return
    if len(body) > THREAD_PARSE_BYTES:  # parsing a large body would stall every other request meanwhile
        found = await anyio.to_thread.run_sync(unsafe_json_problem, body)
    else:
        found = unsafe_json_problem(body)
    if found:
        loc, message = found
        raise Invalid(message, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


def too_large(scope: Scope, setting_for: Callable[[str], str]) -> str:
    """What a 413 says: the limit that applied to this request and the setting that raises it."""
    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    size = f" of {limit:,} bytes" if isinstance(limit, int) else ""
    return f"request body over this endpoint's limit{size}; raise {setting_for(scope['path'])} where the API runs"


class JsonTooLarge:
    """Starlette's body limit answers 413 with the plain text "Content Too Large"; clients of a JSON API (the CLI,
    the SDK, curl piped to jq) read `detail`. This turns that answer into JSON naming the limit and the setting
    that raises it. It must wrap the body limit itself, which sits outside every user middleware."""

    def __init__(self, app: ASGIApp, *, setting_for: Callable[[str], str]) -> None:
        self.app, self.setting_for = app, setting_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def json_send(message: Message) -> None:
            nonlocal replaced
            if (message["type"] == "http.response.start" and message["status"] == 413
                    and Headers(raw=message.get("headers", [])).get("content-type", "").startswith("text/plain")):
                replaced = True
                body = json.dumps({"detail": too_large(scope, self.setting_for)})
                await send({"type": "http.response.start", "status": 413, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]})
                await send({"type": "http.response.body", "body": body.encode()})
                return
            if replaced:
                return  # the plain-text body that went with the replaced start
            await send(message)

        await self.app(scope, receive, json_send)
