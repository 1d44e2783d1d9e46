"""Fast JSON responses for large documents: orjson (numpy arrays included) and a cheaper gzip level."""

from __future__ import annotations

import gzip
import math
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

GZIP_MIN_BYTES = 1024
VARY = {"Vary": "Accept-Encoding"}  # the answer depends on whether the client accepts gzip


def wants_gzip(accept_encoding: str) -> bool:
    return "gzip" in accept_encoding.lower()


def encoded(body: bytes, gzipped: bool, level: int = 6) -> tuple[bytes, dict[str, str]]:
    """`body` as sent and its headers: gzipped at `level` when the client accepts it and it is worth it."""
    if gzipped and len(body) >= GZIP_MIN_BYTES:
        return gzip_sent(gzip.compress(body, compresslevel=level, mtime=0))
    return body, dict(VARY)


def gzip_sent(compressed: bytes) -> tuple[bytes, dict[str, str]]:
    """A body already gzipped (compressed here, or stored so), as sent with its headers."""
    return compressed, {"Content-Encoding": "gzip", **VARY}


def json_response(document: dict[str, Any], request: Request) -> Response:
    """Serialise with orjson, numpy arrays included (the endpoint's response_model documents the shape).

    Compressed here at zlib's default level: the app's GZip middleware uses level 9, which costs 8 ms on a
    1000-epoch run's series (of a 20 ms budget) for no smaller output; it leaves encoded responses alone.
    """
    body, headers = encoded(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY),
                            wants_gzip(request.headers.get("accept-encoding", "")))
    return Response(body, media_type="application/json", headers=headers)


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float as its text ("inf", "nan"): JSON has no such numbers, and an error that
    echoes a user's 1e400 back must still be sent (JSONResponse refuses them: a 500 and a dropped connection)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
