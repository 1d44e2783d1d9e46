"""End to end through real processes: API, Redis, Celery workers; crashes, outages, cancel, live stream."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from prunescope.client import Client
from tests.integration.conftest import WORKER_TOKEN, Stack, digits_run

pytestmark = pytest.mark.integration


def test_run_through_a_real_worker_records_every_epoch_and_streams_it(stack: Stack) -> None:
    stack.start_worker()
    run_id = stack.submit(digits_run(4, recovery={"kind": "splice"}))
    client = Client(stack.api_url)
    seen = list(client.events(run_id))
    run = stack.wait_status(run_id, ("completed", "failed"), timeout=120)
    assert run["status"] == "completed", (run, stack.logs())
    epochs = stack.http.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert all(e["layers"] and e["test_acc"] is not None for e in epochs)
    assert run["summary"]["final_sparsity"] == pytest.approx(epochs[-1]["sparsity"])
    # SSE: every epoch in order, then the final status.
    epoch_events = [data["epoch"] for kind, data in seen if kind == "epoch"]
    assert epoch_events == [1, 2, 3, 4]
    assert [data["status"] for kind, data in seen if kind == "status"][-1] == "completed"
    # Masks read back for every layer and epoch; the newest matches the reported sparsity.
    layers = stack.http.get(f"/api/runs/{run_id}/masks").json()["layers"]
    assert {layer["name"] for layer in layers} == {layer["name"] for layer in epochs[-1]["layers"]}
    for layer in epochs[-1]["layers"]:
        grid = stack.http.get(f"/api/runs/{run_id}/masks/{layer['name']}",
                              params={"epoch": 4, "max_cells": 250_000}).json()
        assert grid["sparsity"] == pytest.approx(layer["sparsity"], abs=1e-6)
    conn = stack.http.get(f"/api/runs/{run_id}/connectivity").json()
    assert conn["image_shape"] == [8, 8]
    model = stack.http.get(f"/api/runs/{run_id}/model")
    assert model.status_code == 200 and len(model.content) > 1000
    # The worker API needs the run's lease, not just the token: a finished run has none.
    stale = stack.http.get(f"/api/worker/runs/{run_id}/artifacts/model.pt",
                           headers={"Authorization": f"Bearer {WORKER_TOKEN}"})
    assert stale.status_code == 409
    assert [e["attempt"] for e in epochs] == [1, 1, 1, 1]


def test_sse_client_resuming_with_last_event_id_misses_nothing(stack: Stack) -> None:
    stack.start_worker()
    run_id = stack.submit(digits_run(4))
    stack.wait_status(run_id, ("completed",), timeout=120)
    client = Client(stack.api_url)
    everything = list(client.events(run_id))
    cut = everything[2]
    # Find the id of the third event, then resume after it.
    import httpx

    with httpx.stream("GET", f"{stack.api_url}/api/runs/{run_id}/events", timeout=30) as response:
        ids = [int(line[3:]) for line in response.iter_lines() if line.startswith("id:")]
    resumed = list(client.events(run_id, last_event_id=ids[2]))
    assert resumed == everything[3:]
    assert cut not in resumed


def test_killed_worker_run_resumes_from_checkpoint_and_completes(stack: Stack) -> None:
    first = stack.start_worker()
    run_id = stack.submit(digits_run(30))
    stack.wait_for(lambda: stack.run(run_id)["epochs_done"] >= 4, 120, "4 epochs")
    stack.kill(first)
    killed_at = stack.run(run_id)["epochs_done"]
    stack.start_worker()
    run = stack.wait_status(run_id, ("completed", "failed"), timeout=180)
    assert run["status"] == "completed", (run, stack.logs())
    assert run["attempts"] == 2
    epochs = stack.http.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == list(range(1, 31))
    events = [data for kind, data in Client(stack.api_url).events(run_id) if kind == "status"]
    assert any("resuming" in (e.get("reason") or "") for e in events), events
    assert killed_at >= 4


def test_worker_stopped_with_sigterm_hands_its_run_back_to_resume_elsewhere(stack: Stack) -> None:
    first = stack.start_worker()
    run_id = stack.submit(digits_run(30))
    stack.wait_for(lambda: stack.run(run_id)["epochs_done"] >= 3, 120, "3 epochs")
    first.terminate()
    assert first.wait(timeout=30) is not None
    handed_back = stack.run(run_id)
    assert handed_back["status"] == "queued", handed_back  # not failed, not cancelled, not left running
    assert handed_back["attempts"] == 1
    stack.start_worker()
    run = stack.wait_status(run_id, ("completed", "failed"), timeout=180)
    assert run["status"] == "completed", stack.logs()
    epochs = stack.http.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == list(range(1, 31))
    # The hand-back uploaded its newest checkpoint: attempt 2 trained no epoch attempt 1 had recorded.
    first_attempt = [e["epoch"] for e in epochs if e["attempt"] == 1]
    assert first_attempt == list(range(1, handed_back["epochs_done"] + 1))
    assert all(e["attempt"] == 2 for e in epochs[handed_back["epochs_done"]:])


def test_run_submitted_while_redis_is_down_starts_when_it_returns(stack: Stack) -> None:
    stack.start_worker()
    stack.stop_redis()
    run_id = stack.submit(digits_run(2))  # 201: committed although the broker is down
    time.sleep(2)
    assert stack.run(run_id)["status"] == "queued"
    assert stack.http.get("/api/health").json()["broker"] is False
    stack.start_redis()
    run = stack.wait_status(run_id, ("completed", "failed"), timeout=120)
    assert run["status"] == "completed", stack.logs()


def test_cancel_stops_a_running_run_within_two_seconds(stack: Stack) -> None:
    stack.start_worker()
    run_id = stack.submit(digits_run(200))
    stack.wait_for(lambda: stack.run(run_id)["epochs_done"] >= 1, 120, "the first epoch")
    started = time.monotonic()
    assert stack.http.post(f"/api/runs/{run_id}/cancel").status_code == 200
    run = stack.wait_status(run_id, ("cancelled", "completed", "failed"), timeout=30)
    elapsed = time.monotonic() - started
    assert run["status"] == "cancelled"
    assert elapsed <= 2.0, f"cancel took {elapsed:.2f} s"
    assert run["epochs_done"] < 200


def test_api_restart_mid_run_loses_no_epoch(stack: Stack) -> None:
    stack.start_worker()
    run_id = stack.submit(digits_run(25))
    stack.wait_for(lambda: stack.run(run_id)["epochs_done"] >= 2, 120, "2 epochs")
    stack.stop_api()
    time.sleep(3)  # the worker keeps training and buffers its reports
    stack.start_api()
    run = stack.wait_status(run_id, ("completed", "failed"), timeout=180)
    assert run["status"] == "completed", stack.logs()
    epochs = stack.http.get(f"/api/runs/{run_id}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == list(range(1, 26))
    assert run["attempts"] == 1


def test_masks_reported_by_the_worker_match_the_engine_bit_for_bit(stack: Stack, tmp_path: object) -> None:
    """The worker's mask stream decodes to exactly what the engine computed (delta chain included)."""
    stack.start_worker()
    config = digits_run(3, recovery={"kind": "random", "drop_fraction": 0.3, "every_steps": 5},
                        target_sparsity=0.9)
    config["pruning"]["schedule"] = {"kind": "constant", "start_epoch": 0, "every_steps": 5}
    run_id = stack.submit(config)
    stack.wait_status(run_id, ("completed",), timeout=120)
    from pathlib import Path

    from prunescope.contract.config import RunConfig
    from worker.engine.training import run_training

    expected: dict[int, dict[str, np.ndarray]] = {}
    full = RunConfig.model_validate(config).model_dump(mode="json")
    run_training(full, data_dir=Path(str(tmp_path)), device="cpu",
                 on_epoch=lambda record, masks: expected.__setitem__(record.epoch, masks))
    for epoch, layer_masks in expected.items():
        for name, mask in layer_masks.items():
            grid = stack.http.get(f"/api/runs/{run_id}/masks/{name}",
                                  params={"epoch": epoch, "max_cells": mask.size}).json()
            got = np.array(grid["density"]) == 1.0
            assert np.array_equal(got, mask.reshape(mask.shape[0], -1)), (epoch, name)


def test_up_runs_api_worker_and_embedded_redis_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from prunescope import services

    port = services.free_port()
    env = {**os.environ, "PRUNESCOPE_HOME": str(tmp_path / "home"), "PRUNESCOPE_PORT": str(port),
           "OMP_NUM_THREADS": "1"}
    env.pop("PRUNESCOPE_REDIS_URL", None)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "prunescope.cli", "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}"
    try:
        services.wait_for_port(port, timeout=60)
        run_id = httpx.post(f"{api}/api/runs", json=digits_run(2)).json()["id"]
        deadline = time.monotonic() + 120
        while httpx.get(f"{api}/api/runs/{run_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(0.5)
        assert httpx.get(f"{api}/api/health").json()["broker"] is True
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
        assert _processes_with_env(f"PRUNESCOPE_HOME={tmp_path / 'home'}") == []  # API and worker
        redis_port = int((tmp_path / "up.log").read_text().split("embedded Redis on 127.0.0.1:")[1].split()[0])
        with pytest.raises(OSError):
            services.wait_for_port(redis_port, timeout=1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{api}/api/health", timeout=2)
    finally:
        if up.poll() is None:
            up.kill()


def _processes_with_env(entry: str) -> list[int]:
    """PIDs of live processes whose environment holds `entry` (children of `up` inherit its home)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
