"""A bound on reading request bodies: a client that declares a body and stops sending gets a 408."""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTimeout(HTTPException):
    """The client sent no body bytes for the allowed time (an HTTPException, so that FastAPI's body parsing
    passes it on as a 408 instead of turning it into a 400)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s", {"Connection": "close"})


MIN_BODY_RATE = 16 * 1024  # bytes per second a body must average after its first `seconds`


class BodyTimeoutMiddleware:
    """Each read of the body must deliver within `seconds` (uvicorn's keep-alive timeout covers only idle
    connections), and the whole body within `seconds` plus its size at `MIN_BODY_RATE`: a client trickling a
    byte now and then cannot hold a connection either. Reads after the body is complete are not bounded: a live
    stream waits on them for a disconnect."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        started = False
        loop = asyncio.get_running_loop()
        first_read: float | None = None
        received = 0

        async def bounded_receive() -> Message:
            nonlocal body_done, first_read, received
            if body_done:
                return await receive()
            now = loop.time()
            if first_read is None:
                first_read = now
            whole_body_left = first_read + self.seconds + received / MIN_BODY_RATE - now
            try:
                message = await asyncio.wait_for(receive(), max(0.0, min(self.seconds, whole_body_left)))
            except TimeoutError as exc:
                raise BodyTimeout(self.seconds) from exc
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTimeout as exc:
            if started:
                raise
            body = json.dumps({"detail": exc.detail}).encode()
            await send({"type": "http.response.start", "status": 408, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
