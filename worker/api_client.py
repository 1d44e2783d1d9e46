"""A typed client of the worker API: contract paths and bodies, the lease header, bounded retries."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from prunescope.contract.worker_api import (
    LEASE_HEADER,
    ArtifactName,
    EpochReport,
    EpochReports,
    FinishReport,
    Heartbeat,
    ReportAck,
    StartRequest,
    StartResponse,
    WorkerPaths,
)

log = logging.getLogger("prunescope.worker.api")

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


SIGNATURE_FIELDS = {"model_params", "dataset_params"}  # heartbeat fields an API before them refuses


class ApiRefused(Exception):
    """The API answered with a definite refusal (a 4xx other than a transient one)."""

    def __init__(self, status_code: int, detail: str) -> None:
        # A 413 is the API's size limit (a large model's model.pt, its checkpoint): say which setting it is.
        hint = (" (larger than the API takes: raise PRUNESCOPE_MAX_REPORT_BYTES where the API runs)"
                if status_code == 413 and "PRUNESCOPE_" not in detail else "")  # an API that names it itself
        super().__init__(f"HTTP {status_code}: {detail}{hint}")
        self.status_code = status_code
        self.detail = detail

    @property
    def unknown_path(self) -> bool:
        """404 for the path itself (an API older than the path), not for a run it does not hold."""
        if self.status_code != 404:
            return False
        try:
            return bool(json.loads(self.detail).get("detail") == "Not Found")
        except (ValueError, AttributeError):
            return False

    def unknown_field(self, name: str) -> bool:
        """422 refusing the body's top-level field `name` as an extra input (an API older than the field)."""
        if self.status_code != 422:
            return False
        try:
            errors = json.loads(self.detail).get("detail")
            return any(e.get("type") == "extra_forbidden" and e.get("loc") == ["body", name] for e in errors)
        except (ValueError, AttributeError, TypeError):
            return False

    @property
    def superseded(self) -> bool:
        """409: the lease is missing or superseded, or the run ended: this worker must let the run go."""
        return self.status_code == 409


class ApiUnreachable(ConnectionError):
    """The API did not answer definitely within the retry bound (down, or failing with 5xx)."""


def _never() -> bool:
    return False


class WorkerApi:
    """Calls to the worker endpoints; each retries transient failures for at most `retry_for` seconds."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Bearer {token}"})
        self.batches = True  # False once the API turned out to have no batch path for epoch reports
        self.finish_epochs = True  # False once the API turned out to refuse epoch reports in a finish
        self.old_heartbeat = False  # True once the API turned out to refuse the plugins' signatures in a heartbeat

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, retry_for: float, lease: str | None = None,
                stop: Callable[[], bool] = _never, **kwargs: Any) -> httpx.Response:
        """Send until the API answers definitely: the response, ApiRefused, or ApiUnreachable after `retry_for` s."""
        headers = dict(kwargs.pop("headers", None) or {})
        if lease is not None:
            headers[LEASE_HEADER] = lease
        delay, deadline = 0.2, time.monotonic() + retry_for
        while True:
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
                if response.status_code not in RETRYABLE:
                    if response.status_code >= 400:
                        raise ApiRefused(response.status_code, response.text[:500])
                    return response
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline or stop():
                raise ApiUnreachable(f"{method} {path}: no definite answer from {self.http.base_url} "
                                     f"within {retry_for:g} s: {problem}")
            log.warning("%s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def start(self, run_id: int, worker: str, *, retry_for: float) -> StartResponse:
        response = self.request("POST", WorkerPaths.start(run_id), retry_for=retry_for,
                                json=StartRequest(worker=worker).model_dump(mode="json"))
        return StartResponse.model_validate_json(response.content)

    def report_epoch(self, run_id: int, lease: str, report: EpochReport, *, retry_for: float,
                     stop: Callable[[], bool] = _never) -> ReportAck:
        response = self.request("POST", WorkerPaths.epochs(run_id), retry_for=retry_for, lease=lease, stop=stop,
                                content=report.model_dump_json(), headers={"Content-Type": "application/json"})
        return ReportAck.model_validate_json(response.content)

    def report_epochs(self, run_id: int, lease: str, reports: list[EpochReport], *, retry_for: float,
                      stop: Callable[[], bool] = _never) -> ReportAck:
        """Several epochs in one request and one transaction (one epoch goes as a plain report). An API older than
        the batch path gets them one by one, from then on (a worker may be upgraded before its API)."""
        if len(reports) > 1 and self.batches:
            try:
                response = self.request("POST", WorkerPaths.epoch_batch(run_id), retry_for=retry_for, lease=lease,
                                        stop=stop, content=EpochReports(epochs=reports).model_dump_json(),
                                        headers={"Content-Type": "application/json"})
                return ReportAck.model_validate_json(response.content)
            except ApiRefused as exc:
                if not exc.unknown_path:
                    raise
                log.warning("the API at %s has no batch path for epoch reports (an older version): "
                            "sending them one by one", self.http.base_url)
                self.batches = False
        acks = [self.report_epoch(run_id, lease, report, retry_for=retry_for, stop=stop) for report in reports]
        return next((ack for ack in acks if ack.cancel), acks[-1])

    def finish(self, run_id: int, lease: str, report: FinishReport, *, retry_for: float) -> None:
        """End the attempt; `report.epochs` are recorded first, in the same request. An API older than that
        field (it refuses it as an extra input) gets them as a batch first, from then on."""
        if report.epochs and not self.finish_epochs:
            self.report_epochs(run_id, lease, report.epochs, retry_for=retry_for)
            report = report.model_copy(update={"epochs": None})
        try:
            self.request("POST", WorkerPaths.finish(run_id), retry_for=retry_for, lease=lease,
                         content=report.model_dump_json(exclude_none=True),
                         headers={"Content-Type": "application/json"})
        except ApiRefused as exc:
            if not (report.epochs and exc.unknown_field("epochs")):
                raise
            log.warning("the API at %s takes no epoch reports in a finish (an older version): sending them first",
                        self.http.base_url)
            self.finish_epochs = False
            self.finish(run_id, lease, report, retry_for=retry_for)

    def heartbeat(self, beat: Heartbeat, lease: str | None) -> ReportAck:
        # One try: the next beat is the retry, and a beat must not hold up the one after it.
        exclude = SIGNATURE_FIELDS if self.old_heartbeat else None
        try:
            response = self.request("POST", WorkerPaths.heartbeat, retry_for=0, lease=lease,
                                    content=beat.model_dump_json(exclude=exclude),
                                    headers={"Content-Type": "application/json"})
        except ApiRefused as exc:
            if exclude is None and any(exc.unknown_field(name) for name in SIGNATURE_FIELDS):
                self.old_heartbeat = True  # an API older than the plugin signatures: beat without them from now on
                return self.heartbeat(beat, lease)
            raise
        return ReportAck.model_validate_json(response.content)

    def upload(self, run_id: int, lease: str, name: ArtifactName, file: Path, *, retry_for: float,
               stop: Callable[[], bool] = _never) -> None:
        content = file.read_bytes()
        self.request("PUT", WorkerPaths.artifact(run_id, name), retry_for=retry_for, lease=lease, stop=stop,
                     content=content, headers={"Content-Type": "application/octet-stream"})

    def download(self, run_id: int, lease: str, name: ArtifactName, target: Path, *, retry_for: float) -> bool:
        """Fetch an artifact into `target` (atomically); False when the API holds none."""
        try:
            response = self.request("GET", WorkerPaths.artifact(run_id, name), retry_for=retry_for, lease=lease)
        except ApiRefused as exc:
            if exc.status_code == 404:
                return False
            raise
        tmp = target.with_name(target.name + ".download")
        tmp.write_bytes(response.content)
        os.replace(tmp, target)
        return True
