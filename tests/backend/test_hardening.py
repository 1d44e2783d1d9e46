"""Writes need intent, responses carry security headers, inputs are bounded, ids are never reused."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.db import Database
from backend.maskviews import service as masks
from backend.tables import MaskSnapshot, Run, Sweep
from prunescope import maskcodec, services
from prunescope.config import Settings
from tests.backend.conftest import digits_config

HUGE = 2**63  # one past the largest 64-bit integer


def submit(client: TestClient) -> int:
    response = client.post("/api/runs", json=digits_config())
    assert response.status_code == 201, response.text
    run_id: int = response.json()["id"]
    return run_id


def db_of(client: TestClient) -> Database:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    return db


def store_masks(client: TestClient, run_id: int, masks_by_epoch: dict[int, np.ndarray], layer: str = "fc1.weight",
                shape: list[int] | None = None) -> None:
    previous = None
    with db_of(client).writing() as session:
        for epoch, mask in sorted(masks_by_epoch.items()):
            encoded = maskcodec.encode(mask, previous)
            session.add(MaskSnapshot(run_id=run_id, layer=layer, epoch=epoch, shape=shape or list(mask.shape),
                                     encoding=encoded.encoding, data=encoded.data, nbytes=len(encoded.data)))
            previous = mask


# -- writes need intent -----------------------------------------------------------------------------------------

def test_cross_site_form_post_cannot_cancel_a_run_without_an_api_token(client: TestClient) -> None:
    run_id = submit(client)
    form = client.post(f"/api/runs/{run_id}/cancel", headers={
        "Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 403
    bare = client.post(f"/api/runs/{run_id}/cancel", headers={"Origin": "http://evil.example"})
    assert bare.status_code == 403
    fetch = client.post(f"/api/runs/{run_id}/cancel", headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch.status_code == 403
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "queued"
    same_origin = client.post(f"/api/runs/{run_id}/cancel", headers={"Origin": "http://testserver",
                                                                     "Sec-Fetch-Site": "same-origin"})
    assert same_origin.status_code == 200
    assert same_origin.json()["status"] == "cancelled"


def test_write_bodies_must_be_json(client: TestClient) -> None:
    run_id = submit(client)
    form = client.post(f"/api/runs/{run_id}/cancel", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    text = client.post("/api/runs", content=b'{"name": "x"}', headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    untyped = client.post("/api/runs", content=b'{"name": "x"}', headers={"Content-Type": ""})
    assert untyped.status_code == 415
    assert client.get("/api/runs").json()["total"] == 1
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200  # no body at all: fine


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/api/runs", "/static/js/app.js", "/api/runs/999"):
        headers = client.get(path).headers
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"]
    docs = client.get("/docs").headers["content-security-policy"]
    assert "'sha256-" in docs  # Swagger UI's start-up script, allowed by its hash only


def test_the_dashboard_page_has_no_inline_script() -> None:
    html = (Path(__file__).resolve().parents[2] / "frontend" / "index.html").read_text()
    for tag in html.split("<script")[1:]:
        assert "src=" in tag.split(">", 1)[0], tag[:80]


def test_unknown_hosts_are_refused_and_star_allows_any(api_settings: Settings) -> None:
    with TestClient(create_app(api_settings, start_dispatcher=False)) as client:
        assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
        assert client.get("/api/runs", headers={"Host": "localhost:8000"}).status_code == 200
    defaults = api_settings.model_copy(update={"allowed_hosts": None})
    with TestClient(create_app(defaults, start_dispatcher=False), base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/runs").status_code == 200
        assert client.get("/api/runs", headers={"Host": "rebound.example"}).status_code == 400
    anything = api_settings.model_copy(update={"allowed_hosts": "*"})
    with TestClient(create_app(anything, start_dispatcher=False)) as client:
        assert client.get("/api/runs", headers={"Host": "any.example"}).status_code == 200


# -- inputs ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["masks/fc1.weight", "masks/fc1.weight/stability", "connectivity"])
def test_a_64_bit_overflowing_epoch_is_a_422(client: TestClient, path: str) -> None:
    run_id = submit(client)
    assert client.get(f"/api/runs/{run_id}/{path}", params={"epoch": HUGE}).status_code == 422


def test_a_huge_run_id_is_a_422(client: TestClient) -> None:
    assert client.get(f"/api/runs/{HUGE}").status_code == 422
    assert client.post(f"/api/runs/{HUGE}/cancel").status_code == 422


def test_a_static_path_with_nul_is_a_404(client: TestClient) -> None:
    assert client.get("/static/%00").status_code == 404
    assert client.get("/static/js/%00app.js").status_code == 404


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_sweep_grids_with_non_finite_numbers_are_refused_and_nothing_is_stored(client: TestClient,
                                                                               value: str) -> None:
    body = ('{"name": "s", "base": {"dataset": {"name": "digits"}, "training": {"epochs": 2}}, '
            '"grid": {"training.lr": [0.1, ' + value + ']}}')
    response = client.post("/api/sweeps", content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert client.get("/api/sweeps").json()["total"] == 0
    assert client.get("/api/runs").json()["total"] == 0


def test_a_lone_surrogate_is_refused_everywhere(client: TestClient) -> None:
    sweep = b'{"name": "s\\ud800", "base": {"dataset": {"name": "digits"}}, "grid": {"training.seed": [0]}}'
    headers = {"Content-Type": "application/json"}
    assert client.post("/api/sweeps", content=sweep, headers=headers).status_code == 422
    assert client.get("/api/sweeps").json()["total"] == 0
    run = b'{"name": "r\\udfff", "dataset": {"name": "digits"}}'
    assert client.post("/api/runs", content=run, headers=headers).status_code == 422
    run_id = submit(client)
    patch = client.patch(f"/api/runs/{run_id}", content=b'{"notes": "\\ud83d"}', headers=headers)
    assert patch.status_code == 422
    paired = client.patch(f"/api/runs/{run_id}", content=b'{"notes": "\\ud83d\\ude00"}', headers=headers)
    assert paired.status_code == 200 and paired.json()["notes"] == "\U0001f600"


def test_a_failing_combination_stores_no_part_of_the_sweep(client: TestClient) -> None:
    body = {"name": "s", "base": digits_config(), "grid": {"training.epochs": [2, 0, 3]}}
    assert client.post("/api/sweeps", json=body).status_code == 422
    assert client.get("/api/runs").json()["total"] == 0
    with db_of(client).session() as session:
        assert session.query(Sweep).count() == 0


def test_a_mask_declaring_an_absurd_shape_is_refused_not_decoded(client: TestClient) -> None:
    run_id = submit(client)
    bomb = maskcodec.encode(np.zeros(16, dtype=bool))
    with db_of(client).writing() as session:
        session.add(MaskSnapshot(run_id=run_id, layer="fc1.weight", epoch=1, shape=[2**20, 2**20],
                                 encoding=maskcodec.KEY, data=bomb.data, nbytes=len(bomb.data)))
    response = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": 1})
    assert response.status_code == 422
    assert "weights" in response.json()["detail"]


def test_run_ids_are_never_reused_after_deleting_the_newest(client: TestClient) -> None:
    first, newest = submit(client), submit(client)
    with db_of(client).writing() as session:
        run = session.get(Run, newest)
        assert run is not None
        run.status = "cancelled"
    assert client.delete(f"/api/runs/{newest}").status_code == 204
    assert submit(client) == newest + 1 > first


# -- disk, timeouts, mask cache ---------------------------------------------------------------------------------

def test_health_reports_the_artifact_dirs_size_measured_at_most_once_a_minute(
        client: TestClient, api_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(client.app.state.artifact_size, "clock", lambda: now[0])  # type: ignore[attr-defined]
    assert client.get("/api/health").json()["artifact_bytes"] == 0
    folder = api_settings.resolved_artifact_dir / "runs" / "1"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"x" * 1234)
    now[0] = 59.0  # a health check every 10 s walked every artifact: ~1.7 s of CPU at 100 000 runs
    assert client.get("/api/health").json()["artifact_bytes"] == 0
    now[0] = 60.0
    assert client.get("/api/health").json()["artifact_bytes"] == 1234


def test_cached_masks_are_exact_and_a_re_reported_epoch_is_not_served_stale(client: TestClient) -> None:
    run_id = submit(client)
    rng = np.random.default_rng(0)
    history = {e: rng.random((6, 5)) > 0.5 for e in range(1, 6)}
    store_masks(client, run_id, history)
    with db_of(client).session() as session:
        for epoch in (3, 5, 4, 5):
            assert np.array_equal(masks.mask_at(session, run_id, "fc1.weight", epoch), history[epoch])
    replaced = ~history[5]
    with db_of(client).writing() as session:
        session.query(MaskSnapshot).filter_by(run_id=run_id, epoch=5).delete()
        encoded = maskcodec.encode(replaced, history[4])
        session.add(MaskSnapshot(run_id=run_id, layer="fc1.weight", epoch=5, shape=[6, 5], encoding=encoded.encoding,
                                 data=encoded.data, nbytes=len(encoded.data)))
    with db_of(client).session() as session:
        assert np.array_equal(masks.mask_at(session, run_id, "fc1.weight", 5), replaced)
    grid = client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": 5}).json()
    assert grid["sparsity"] == pytest.approx(1 - replaced.mean())


@pytest.fixture
def live_api(api_settings: Settings) -> Iterator[tuple[str, int]]:
    settings = api_settings.model_copy(update={"body_timeout": 1.0, "allowed_hosts": "127.0.0.1"})
    port = services.free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, start_dispatcher=False), host="127.0.0.1", port=port,
                                           log_level="warning", timeout_keep_alive=300))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def test_a_body_trickled_a_byte_at_a_time_gets_a_408(live_api: tuple[str, int]) -> None:
    host, port = live_api
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n")
        sock.settimeout(0.5)
        answer = b""
        for _ in range(40):  # a byte every 0.5 s: each read is within the 1 s timeout, the body never ends
            try:
                sock.sendall(b" ")
                answer += sock.recv(4096)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                pass
            if b"\r\n\r\n" in answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 15


def test_a_request_whose_body_never_arrives_gets_a_408(live_api: tuple[str, int]) -> None:
    host, port = live_api
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"na")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_compare_ids_given_twice_are_refused_not_read_as_the_last(client: TestClient) -> None:
    first = client.post("/api/runs", json=digits_config()).json()["id"]
    second = client.post("/api/runs", json=digits_config()).json()["id"]
    answer = client.get(f"/api/compare?ids={first}&ids={second}")  # compared run `second` alone before
    assert answer.status_code == 422 and "comma-separated" in answer.text
    assert client.get(f"/api/compare?ids={first},{second}").status_code == 200
