"""Report bodies parsed and validated in one pass (pydantic's JSON parser), for the routes that take the most.

FastAPI reads a JSON body with the standard library's `json.loads`, then validates the objects it built: a
250-epoch tracked batch spends more time there than in its transaction. Routes of `ValidatedBodyRoute` hand the
raw bytes to `Model.model_validate_json` instead; FastAPI then receives the validated model (which it accepts as
is). A body that does not validate falls back to FastAPI's own path, so its 422 (or JSON error) reads as for any
other route, and the OpenAPI document is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send


class _ValidatedBodyRequest(Request):
    """A request whose `json()` is its body validated as `model` (or, when that fails, the parsed JSON)."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, model: type[BaseModel]) -> None:
        super().__init__(scope, receive, send)
        self.body_model = model

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = self.body_model.model_validate_json(body)
            except ValidationError:
                self._json = json.loads(body)  # FastAPI validates this again and answers with its located 422
        return self._json


class ValidatedBodyRoute(APIRoute):
    """An API route whose JSON body model (if it has one) is validated straight from the request's bytes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        field = self.body_field
        model = getattr(getattr(field, "field_info", None), "annotation", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler
        body_model: type[BaseModel] = model

        async def validated(request: Request) -> Response:
            return await handler(_ValidatedBodyRequest(request.scope, request.receive, request._send, body_model))

        return validated
