"""A small Python client of the prunescope REST API (httpx): submit, list, show, cancel, follow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


class ApiError(Exception):
    """The API answered with an error, or could not be reached; the message says which and why."""


class Client:
    def __init__(self, api_url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.api_url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the prunescope API at {self.api_url} ({exc}); "
                           "is `prunescope up` running? Set --api or PRUNESCOPE_API_URL.") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            if isinstance(detail, list):
                detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
            raise ApiError(f"HTTP {response.status_code}: {detail}")
        return response.json() if response.content else None

    def submit(self, config: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/runs", json=config)
        return result

    def run(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/runs/{run_id}")
        return result

    def runs(self, **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/api/runs", params=query)
        return result

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", f"/api/runs/{run_id}/epochs")["items"]
        return items

    def cancel(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/runs/{run_id}/cancel")
        return result

    def events(self, run_id: int, last_event_id: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) pairs from the run's live stream until the run has finished; reconnects on drops."""
        last = last_event_id
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with self.http.stream("GET", f"/api/runs/{run_id}/events", headers=headers,
                                      timeout=httpx.Timeout(30.0, read=60.0)) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise ApiError(f"HTTP {response.status_code}: {response.text}")
                    kind, data, event_id = "message", "", None
                    for line in response.iter_lines():
                        if line == "":
                            if data:
                                if event_id is not None:
                                    last = int(event_id)
                                yield kind, json.loads(data)
                            kind, data, event_id = "message", "", None
                        elif line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:"):
                            data += line[5:].strip()
                        elif line.startswith("id:"):
                            event_id = line[3:].strip()
                return
            except httpx.TransportError as exc:
                raise ApiError(f"lost the event stream of run {run_id}: {exc}") from exc

    def close(self) -> None:
        self.http.close()
