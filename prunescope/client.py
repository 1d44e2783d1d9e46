"""A small Python client of the prunescope REST API (httpx): runs, results, exports, sweeps, live events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from prunescope.contract.status import FINISHED_STATUSES

if TYPE_CHECKING:
    import pandas

ExportFormat = Literal["csv", "json", "npz"]


class ApiError(Exception):
    """The API answered with an error, or could not be reached; the message says which and why."""


class Client:
    """`Client("http://host:8000", token=...)`; every method raises ApiError with an actionable message."""

    def __init__(self, api_url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.api_url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the prunescope API at {self.api_url} ({exc}); "
                           "is `prunescope up` running? Set --api or PRUNESCOPE_API_URL.") from exc
        if response.status_code >= 400:
            raise ApiError(f"HTTP {response.status_code}: {_detail(response)}")
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:  # something else answers at that address (a web page, a proxy's error page)
            raise ApiError(f"{self.api_url} answered {path} with something that is not the prunescope API's JSON "
                           f"({response.headers.get('content-type', 'no content type')}); is --api or "
                           "PRUNESCOPE_API_URL right?") from exc

    # Runs -------------------------------------------------------------------------------------------------------
    def submit(self, config: dict[str, Any]) -> dict[str, Any]:
        """Queue a run config; returns the stored run (`id`, `status` "queued", the config with defaults)."""
        result: dict[str, Any] = self._call("POST", "/api/runs", json=config)
        return result

    def run(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/runs/{run_id}")
        return result

    def runs(self, **params: Any) -> dict[str, Any]:
        """`{"items", "total"}`; params as `GET /api/runs` takes them (status, tag, q, strategy, min_acc, sort, …)."""
        query = {k: v for k, v in params.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/api/runs", params=query)
        return result

    def wait(self, run_id: int, timeout: float | None = None, poll: float = 1.0) -> dict[str, Any]:
        """Block until the run has finished; returns it. Raises TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in FINISHED_STATUSES:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout} s")
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def cancel(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/runs/{run_id}/cancel")
        return result

    def patch(self, run_id: int, *, name: str | None = None, tags: list[str] | None = None,
              notes: str | None = None) -> dict[str, Any]:
        """Change a run's name, tags or notes; arguments left None are kept."""
        body = {k: v for k, v in {"name": name, "tags": tags, "notes": notes}.items() if v is not None}
        result: dict[str, Any] = self._call("PATCH", f"/api/runs/{run_id}", json=body)
        return result

    def delete(self, run_id: int) -> None:
        """Delete a finished run and all it recorded (a queued or running one must be cancelled first)."""
        self._call("DELETE", f"/api/runs/{run_id}")

    # Results ----------------------------------------------------------------------------------------------------
    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """Every recorded epoch as a dict, with its per-layer stats under `layers`."""
        items: list[dict[str, Any]] = self._call("GET", f"/api/runs/{run_id}/epochs")["items"]
        return items

    def epoch_columns(self, run_id: int) -> dict[str, Any]:
        """The same history with one list per series (`?layout=columns`): `columns` (epoch, train_loss, ... by
        name), `layers` (by layer name: shape, sparsity, pruned, regrown, threshold, histogram) and `extra` (a
        tracked run's other scalars), aligned by epoch, None where an epoch lacks a value. Cheaper to read."""
        result: dict[str, Any] = self._call("GET", f"/api/runs/{run_id}/epochs", params={"layout": "columns"})
        return result

    def epochs_frame(self, run_id: int) -> pandas.DataFrame:
        """The epochs as a pandas DataFrame, one row per epoch (needs pandas installed)."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("epochs_frame needs pandas: pip install pandas (or use epochs())") from exc
        return pandas.DataFrame(self.epochs(run_id))

    def metrics(self, run_id: int, names: list[str] | None = None, max_points: int = 1000) -> dict[str, Any]:
        params: dict[str, Any] = {"max_points": max_points}
        if names:
            params["names"] = ",".join(names)
        result: dict[str, Any] = self._call("GET", f"/api/runs/{run_id}/metrics", params=params)
        return result

    def compare(self, run_ids: list[int], names: list[str] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"ids": ",".join(map(str, run_ids))}
        if names:
            params["names"] = ",".join(names)
        result: dict[str, Any] = self._call("GET", "/api/compare", params=params)
        return result

    def pareto(self, model: str | None = None, dataset: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"model": model, "dataset": dataset}.items() if v}
        result: dict[str, Any] = self._call("GET", "/api/pareto", params=params)
        return result

    def export(self, run_id: int, format: ExportFormat = "csv", path: str | Path | None = None,
               epoch: int | None = None) -> bytes:
        """A run's export (csv, json, or npz masks) as bytes; also written to `path` when given."""
        params: dict[str, Any] = {"format": format}
        if epoch is not None:
            params["epoch"] = epoch
        content = self._request("GET", f"/api/runs/{run_id}/export", params=params).content
        if path is not None:
            Path(path).write_bytes(content)
        return content

    def download_model(self, run_id: int, path: str | Path) -> Path:
        """Save the run's pruned model file (`torch.load(path, weights_only=True)` reads it)."""
        target = Path(path)
        target.write_bytes(self._request("GET", f"/api/runs/{run_id}/model").content)
        return target

    # Sweeps -----------------------------------------------------------------------------------------------------
    def sweep(self, name: str, base: dict[str, Any], grid: dict[str, list[Any]]) -> dict[str, Any]:
        """Create one run per grid combination (dotted config paths to values); returns the sweep with its runs."""
        result: dict[str, Any] = self._call("POST", "/api/sweeps", json={"name": name, "base": base, "grid": grid})
        return result

    def sweep_status(self, sweep_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/sweeps/{sweep_id}")
        return result

    def sweeps(self, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/sweeps", params={"limit": limit, "offset": offset})
        return result

    # Live -------------------------------------------------------------------------------------------------------
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
                        raise ApiError(f"HTTP {response.status_code}: {_detail(response)}")
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

    follow = events

    def close(self) -> None:
        self.http.close()


def _detail(response: httpx.Response) -> str:
    """The error's `detail`, with validation errors as `field.path: message` lines."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                         if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)
