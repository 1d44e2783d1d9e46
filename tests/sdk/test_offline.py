"""Offline tracking: records spooled when the API is unreachable, uploaded by `prunescope sync` exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

import prunescope
from backend.db import Database
from backend.maskviews.service import mask_at
from prunescope import cli
from prunescope.sdk import spool as spooling
from tests.sdk.conftest import TOKEN, LiveApi, start_api
from tests.sdk.test_tracking import tiny_training, train_epoch, wait_for

ROOT = Path(__file__).resolve().parents[2]


def sync_cli(api: LiveApi, path: Path, *extra: str) -> int:
    return cli.main(["--api", api.url, "--token", TOKEN, "sync", str(path), *extra])


def test_spooled_run_syncs_twice_with_every_epoch_exactly_once(api: LiveApi, dead_api: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    model, optimizer, pruner = tiny_training(epochs=5)
    run = prunescope.init(name="offline", config={"arch": "mlp"}, api=dead_api, token=TOKEN, dir=tmp_path)
    assert run.id is None and run.offline
    run.watch(pruner)
    masks = []
    for epoch in range(1, 6):
        train_epoch(model, optimizer)
        masks.append({name: mask.numpy().copy() for name, mask in pruner.masks().items()})
        run.log(step=epoch * 4, loss=0.5)
        run.log(epoch=epoch, train_loss=1.0 / epoch, test_acc=0.5, custom=epoch * 2)
    run.finish()
    [spool_dir] = list(tmp_path.iterdir())
    assert spool_dir == run.spool.path
    assert (spool_dir / spooling.RECORDS).read_bytes().count(b'{"t":"epoch"') == 5

    assert sync_cli(api, tmp_path) == 0
    assert "5 epochs, 5 points, completed" in capsys.readouterr().out
    assert sync_cli(api, tmp_path) == 0
    assert "already uploaded" in capsys.readouterr().out
    assert sync_cli(api, spool_dir, "--force") == 0  # an interrupted or repeated upload duplicates nothing
    run_id = orjson.loads((spool_dir / spooling.META).read_bytes())["run_id"]
    with api.http() as http:
        epochs = http.get(f"/api/runs/{run_id}/epochs").json()["items"]
        detail = http.get(f"/api/runs/{run_id}").json()
        points = http.get(f"/api/tracked-runs/{run_id}/points").json()["items"]
        same_name = http.get("/api/runs", params={"q": "offline"}).json()["total"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert epochs[2]["extra"] == {"custom": 6}
    assert [p["step"] for p in points] == [4, 8, 12, 16, 20]
    assert detail["status"] == "completed" and detail["kind"] == "tracked" and same_name == 1
    assert detail["strategy"] == "magnitude/unstructured"
    db = Database(api.settings.resolved_database_url)
    try:
        with db.session() as session:
            for epoch, expected in enumerate(masks, start=1):
                for name, mask in expected.items():
                    assert np.array_equal(mask_at(session, run_id, name, epoch), mask)
    finally:
        db.dispose()


def test_a_torn_last_line_is_left_for_a_later_sync(api: LiveApi, tmp_path: Path) -> None:
    run = prunescope.init(name="torn", dir=tmp_path, offline=True)
    for epoch in (1, 2):
        run.log(epoch=epoch, train_loss=0.1)
    run.finish()
    records = run.spool.path / spooling.RECORDS
    whole = records.read_bytes()
    records.write_bytes(whole + b'{"t":"epoch","r":{"epoch":3,')  # the process died mid-write
    [result] = spooling.sync(tmp_path, api.url, TOKEN)
    assert result.epochs == 2 and result.finished == "completed"


def test_sync_of_a_path_without_spools_fails_cleanly(api: LiveApi, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert sync_cli(api, tmp_path / "missing") == 1
    assert "not a spool directory" in capsys.readouterr().err


def test_an_api_outage_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    live = start_api(tmp_path / "home")
    port = int(live.url.rsplit(":", 1)[1])
    run = prunescope.init(name="outage", api=live.url, token=TOKEN, dir=tmp_path / "spool")
    run_id = run.id
    run.log(epoch=1, train_loss=1.0)
    run.log(epoch=2, train_loss=0.5)
    with live.http() as http:
        wait_for(lambda: http.get(f"/api/runs/{run_id}").json()["epochs_done"] == 2)
    live.stop()
    run.log(epoch=3, train_loss=0.25)  # the API is down: spooled
    run.log(epoch=4, train_loss=0.125)
    wait_for(lambda: run.offline and (run.spool.path / spooling.RECORDS).exists())
    restarted = start_api(tmp_path / "home", port=port)
    try:
        run.finish()  # comes back online: uploads the spool, then finishes
        with restarted.http() as http:
            epochs = http.get(f"/api/runs/{run_id}/epochs").json()["items"]
            detail = http.get(f"/api/runs/{run_id}").json()
    finally:
        restarted.stop()
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert detail["status"] == "completed"


def test_example_script_runs_offline_and_its_spool_syncs(api: LiveApi, dead_api: str, tmp_path: Path) -> None:
    env = {**os.environ, "PRUNESCOPE_HOME": str(tmp_path / "home"), "PRUNESCOPE_API_URL": dead_api}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "track_digits.py"), "--epochs", "2"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "spooled in" in done.stdout and "prunescope sync" in done.stderr
    [result] = spooling.sync(tmp_path / "home" / "spool", api.url, TOKEN)
    assert result.epochs == 2 and result.finished == "completed"
    with api.http() as http:
        epochs = http.get(f"/api/runs/{result.run_id}/epochs").json()["items"]
    assert [len(e["layers"]) for e in epochs] == [3, 3]
    assert epochs[-1]["sparsity"] == pytest.approx(0.9, abs=0.01)


def test_import_prunescope_stays_torch_free() -> None:
    code = ("import sys, prunescope; prunescope.init; prunescope.register_model; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
