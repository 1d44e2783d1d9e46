"""HTTP calls of the tracking SDK: create a tracked run, send a batch, finish; errors split into retry-or-spool
(the API cannot be reached) and fatal (the API refused the data)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from prunescope.contract.tracking import MAX_BATCH_EPOCHS, MAX_BATCH_POINTS, TrackingPaths
from prunescope.contract.worker_api import LEASE_HEADER

# The SDK keeps each request well under the API's body limit for reports; a batch is split to fit.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


class TrackingError(Exception):
    """The API refused a tracking call (bad data, wrong token or lease); retrying the same call cannot help."""

    def __init__(self, message: str, status_code: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class ApiUnreachable(Exception):
    """The API did not answer, or answered 5xx: the records go to the spool and are sent later."""


class RunCancelled(Exception):
    """The run was cancelled from the dashboard (raised by the next `run.log`)."""


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except ValueError:
        return response.text[:500]


class Transport:
    """One run's connection to the API: the API token on every call, the lease on every call about the run."""

    def __init__(self, api: str, token: str | None, lease: str, *, timeout: float = 10.0,
                 http: httpx.Client | None = None) -> None:
        headers = {"Content-Type": "application/json", LEASE_HEADER: lease}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.api = api.rstrip("/")
        self.http = http or httpx.Client(base_url=self.api, timeout=httpx.Timeout(timeout, connect=3.0))
        self.headers = headers

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: bytes) -> Any:
        try:
            response = self.http.post(path, content=body, headers=self.headers)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach the prunescope API at {self.api}: {exc}") from exc
        if response.status_code >= 500:
            raise ApiUnreachable(f"the prunescope API answered HTTP {response.status_code}")
        if response.status_code >= 400:
            detail = _detail(response)
            raise TrackingError(f"HTTP {response.status_code} from {path}: {detail}", response.status_code, detail)
        return response.json() if response.content else None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.post(TrackingPaths.create, orjson.dumps(body))
        return answer

    def batch(self, run_id: int, body: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = self.post(TrackingPaths.batch(run_id), body)
        return answer

    def finish(self, run_id: int, body: dict[str, Any]) -> None:
        self.post(TrackingPaths.finish(run_id), orjson.dumps(body))


def batch_bodies(epochs: list[bytes], points: list[bytes], meta: dict[str, Any] | None = None,
                 limit: int = MAX_REQUEST_BYTES) -> list[bytes]:
    """Already-serialised records packed into as few batch bodies as fit `limit`, in order: epochs, then points."""
    bodies: list[bytes] = []
    head = orjson.dumps(meta)[1:-1] + b"," if meta else b""
    current: dict[str, list[bytes]] = {"epochs": [], "points": []}
    size = len(head) + 32

    def close() -> None:
        nonlocal size, current, head
        parts = [head] if head else []
        parts.append(b'"epochs":[' + b",".join(current["epochs"]) + b'],"points":[' + b",".join(current["points"])
                     + b"]")
        bodies.append(b"{" + b"".join(parts) + b"}")
        current, head, size = {"epochs": [], "points": []}, b"", 32

    for kind, items, most in (("epochs", epochs, MAX_BATCH_EPOCHS), ("points", points, MAX_BATCH_POINTS)):
        for item in items:
            full = size + len(item) + 1 > limit or len(current[kind]) >= most
            if full and (current["epochs"] or current["points"]):
                close()
            current[kind].append(item)
            size += len(item) + 1
    if current["epochs"] or current["points"] or head or not bodies:
        close()
    return bodies
