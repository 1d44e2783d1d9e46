"""The outbox and the API client: bounded retries, every failure reported once, flush with a bound."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from prunescope.contract.worker_api import LEASE_HEADER, Heartbeat
from worker.api_client import ApiRefused, ApiUnreachable, WorkerApi
from worker.reporter import Failure, Reporter


def failures() -> tuple[list[Failure], Callable[[Failure], None]]:
    seen: list[Failure] = []
    return seen, seen.append


def test_deliveries_happen_in_order(tmp_path: Path) -> None:
    seen, on_failure = failures()
    reporter = Reporter(on_failure=on_failure)
    order: list[int] = []
    for n in range(20):
        reporter.send(f"item {n}", lambda stop, n=n: order.append(n))
    assert reporter.flush(timeout=5)
    reporter.close()
    assert order == list(range(20)) and seen == []


def test_an_unexpected_error_is_reported_once_and_the_thread_keeps_answering(tmp_path: Path) -> None:
    seen, on_failure = failures()
    reporter = Reporter(on_failure=on_failure)
    spool = tmp_path / "gone.pt"  # e.g. removed by another process

    def upload(stop: Callable[[], bool]) -> None:
        spool.read_bytes()

    later = tmp_path / "later.pt"
    later.write_bytes(b"x")
    reporter.send("checkpoint upload", upload)
    reporter.send("epoch 2 report", lambda stop: None, spool=later)
    assert reporter.flush(timeout=5)  # never hangs: what follows a failure is dropped
    assert [str(f) for f in seen] == [f"checkpoint upload: FileNotFoundError: [Errno 2] No such file or directory: "
                                      f"'{spool}'"]
    assert reporter.failure is seen[0] and not seen[0].superseded
    assert not later.exists()  # a dropped upload's spool file goes too
    reporter.send("epoch 3 report", lambda stop: pytest.fail("sent after a failure"))
    assert reporter.flush(timeout=1)
    reporter.close()


def test_a_409_marks_the_failure_superseded() -> None:
    seen, on_failure = failures()
    reporter = Reporter(on_failure=on_failure)

    def refused(stop: Callable[[], bool]) -> None:
        raise ApiRefused(409, "lease superseded")

    reporter.send("epoch 1 report", refused)
    assert reporter.flush(timeout=5)
    assert seen[0].superseded
    reporter.close()


def test_flush_returns_after_its_timeout_and_abort_stops_a_retrying_delivery() -> None:
    seen, on_failure = failures()
    reporter = Reporter(on_failure=on_failure)
    stopped = threading.Event()

    def stuck(stop: Callable[[], bool]) -> None:
        while not stop():
            time.sleep(0.01)
        stopped.set()

    reporter.send("epoch 1 report", stuck)
    assert reporter.flush(timeout=0.2) is False
    reporter.abort()
    assert stopped.wait(5)
    assert reporter.flush(timeout=5)
    assert seen == []  # an abort on purpose is not a failure
    reporter.close()


def test_a_newer_checkpoint_replaces_one_still_waiting(tmp_path: Path) -> None:
    seen, on_failure = failures()
    reporter = Reporter(on_failure=on_failure)
    gate = threading.Event()
    sent: list[str] = []
    reporter.send("blocker", lambda stop: gate.wait(5))
    spools = []
    for n in range(3):
        spool = tmp_path / f"checkpoint-{n}"
        spool.write_bytes(b"c")
        spools.append(spool)
        reporter.send(f"checkpoint {n}", lambda stop, n=n: sent.append(f"checkpoint {n}"), key="checkpoint",
                      spool=spool)
    gate.set()
    assert reporter.flush(timeout=5)
    assert sent == ["checkpoint 2"] and seen == []
    assert not any(spool.exists() for spool in spools)
    reporter.close()


def mock_api(handler: Callable[[httpx.Request], httpx.Response]) -> WorkerApi:
    return WorkerApi("http://api", "token", transport=httpx.MockTransport(handler))


def test_the_client_retries_transient_answers_and_sends_the_lease() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"cancel": True, "reason": "cancel requested"})

    api = mock_api(handler)
    with pytest.raises(ApiUnreachable):
        api.heartbeat(Heartbeat(worker="w", run_id=7), lease="L")
    assert len(calls) == 1  # a heartbeat is tried once: the next beat is its retry
    response = api.request("POST", "/x", retry_for=10, lease="L")
    assert response.status_code == 200 and len(calls) == 3
    assert api.heartbeat(Heartbeat(worker="w", run_id=7), lease="L").cancel is True
    assert all(c.headers[LEASE_HEADER] == "L" and c.headers["Authorization"] == "Bearer token" for c in calls)


def test_the_client_gives_up_after_its_bound_and_refusals_are_final() -> None:
    api = mock_api(lambda request: httpx.Response(500, text="boom"))
    started = time.monotonic()
    with pytest.raises(ApiUnreachable, match=r"within 0\.5 s"):
        api.request("GET", "/x", retry_for=0.5)
    assert time.monotonic() - started < 5
    refusing = mock_api(lambda request: httpx.Response(409, text="superseded"))
    with pytest.raises(ApiRefused) as info:
        refusing.request("GET", "/x", retry_for=60)
    assert info.value.superseded


def test_a_missing_artifact_downloads_as_false(tmp_path: Path) -> None:
    api = mock_api(lambda request: httpx.Response(404, text="none"))
    assert api.download(1, "L", "checkpoint.pt", tmp_path / "c.pt", retry_for=1) is False
    ok = mock_api(lambda request: httpx.Response(200, content=b"weights"))
    assert ok.download(1, "L", "checkpoint.pt", tmp_path / "c.pt", retry_for=1) is True
    assert (tmp_path / "c.pt").read_bytes() == b"weights"


@pytest.mark.parametrize("ending", ["flush", "abort", "close"])
def test_a_lingering_delivery_goes_at_once_when_flushed_aborted_or_closed(ending: str) -> None:
    seen, on_failure = failures()
    reporter = Reporter(on_failure=on_failure)
    lingering, done = threading.Event(), threading.Event()

    def deliver(stop: Callable[[], bool]) -> None:
        lingering.set()
        reporter.linger(time.monotonic() + 3600)  # a report interval of an hour
        done.set()

    reporter.send("epoch reports", deliver)
    assert lingering.wait(5)
    if ending == "flush":
        assert reporter.flush(timeout=30)  # without the wake-up this would wait out the hour, and fail after 30 s
    else:
        getattr(reporter, ending)()
    assert done.wait(30)
    reporter.close()
    assert seen == []


def test_a_failure_names_what_a_callable_label_says_when_it_happens() -> None:
    seen, on_failure = failures()
    reporter = Reporter(on_failure=on_failure)
    label = ["epoch 1 report"]

    def refused(stop: Callable[[], bool]) -> None:
        label[0] = "epochs 2-5 reports"
        raise ApiRefused(422, "epoch 5 is past the run's 4 epochs")

    reporter.send(lambda: label[0], refused)
    assert reporter.flush(timeout=5)
    reporter.close()
    assert [str(f) for f in seen] == ["epochs 2-5 reports: HTTP 422: epoch 5 is past the run's 4 epochs"]


def test_epochs_go_one_by_one_to_an_api_without_the_batch_path() -> None:
    from prunescope.contract.worker_api import EpochReport

    paths: list[str] = []

    def older_api(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/batch"):
            return httpx.Response(404, json={"detail": "Not Found"})  # a path this API version does not have
        epoch = int(json.loads(request.content)["epoch"])
        return httpx.Response(200, json={"cancel": epoch == 2, "reason": "cancel requested" if epoch == 2 else None})

    api = mock_api(older_api)
    reports = [EpochReport(worker="w", epoch=e) for e in (1, 2, 3)]
    ack = api.report_epochs(7, "lease", reports, retry_for=1)
    assert ack.cancel  # any epoch's cancel is the batch's
    assert paths == ["/api/worker/runs/7/epochs/batch"] + ["/api/worker/runs/7/epochs"] * 3
    assert api.batches is False
    paths.clear()
    api.report_epochs(7, "lease", reports[:2], retry_for=1)
    assert paths == ["/api/worker/runs/7/epochs"] * 2  # not asked again


def test_a_run_the_api_does_not_hold_is_not_taken_for_an_older_api() -> None:
    from prunescope.contract.worker_api import EpochReport

    api = mock_api(lambda request: httpx.Response(404, json={"detail": "run 7 not found"}))
    with pytest.raises(ApiRefused) as refused:
        api.report_epochs(7, "lease", [EpochReport(worker="w", epoch=e) for e in (1, 2)], retry_for=1)
    assert refused.value.status_code == 404 and not refused.value.unknown_path and api.batches
