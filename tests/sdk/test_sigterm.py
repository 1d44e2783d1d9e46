"""A tracked script killed with SIGTERM (a scheduler's time limit, `kill`, `docker stop`) loses nothing it logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.sdk.conftest import TOKEN, LiveApi

ROOT = Path(__file__).resolve().parents[2]

# Logs epochs as fast as it can (each well inside the sender's 0.25-s batch) and says which it logged.
SCRIPT = """
import os, sys, time
import prunescope
run = prunescope.init(name=sys.argv[3], api=sys.argv[1], token=sys.argv[2], dir=sys.argv[4])
{setup}
{opening}
epoch = 0
while True:
    epoch += 1
    run.log(epoch=epoch, train_loss=1.0 / epoch)
    print(epoch, flush=True)
    time.sleep(0.002)
"""


def killed_script(api: LiveApi, tmp_path: Path, name: str, *, setup: str = "", opening: str = "",
                  signum: int = signal.SIGTERM) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(SCRIPT.format(setup=setup, opening=opening)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), api.url, TOKEN, name, str(tmp_path / "spool")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    logged: list[int] = []
    deadline = time.monotonic() + 60
    while len(logged) < 30 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        logged.append(int(line))
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    logged += [int(line) for line in out.split()]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), logged


def stored(api: LiveApi, name: str) -> tuple[dict, list[int]]:
    with api.http() as http:
        run = next(r for r in http.get("/api/runs", params={"limit": 200}).json()["items"]
                   if r["name"] == name)
        detail = http.get(f"/api/runs/{run['id']}").json()
        epochs = [e["epoch"] for e in http.get(f"/api/runs/{run['id']}/epochs").json()["items"]]
    return detail, epochs


@pytest.mark.parametrize("opening", ["", "run.__enter__()"], ids=["plain-init", "inside-with"])
def test_sigterm_ends_the_run_failed_with_every_logged_epoch(api: LiveApi, tmp_path: Path, opening: str) -> None:
    # Before: the process died at once, the epochs of the sender's last ~0.25 s were never sent, and the run stayed
    # `running` until the API's heartbeat timeout failed it.
    name = f"sigterm-{'with' if opening else 'plain'}"
    done, logged = killed_script(api, tmp_path, name, opening=opening)
    assert done.returncode == -signal.SIGTERM, done.stderr  # it still dies of the signal
    detail, epochs = stored(api, name)
    assert len(logged) >= 30
    assert epochs == list(range(1, max(logged) + 1)), (len(epochs), max(logged))
    assert detail["status"] == "failed"
    assert "SIGTERM" in detail["error"]


def test_a_script_with_its_own_sigterm_handler_keeps_it(api: LiveApi, tmp_path: Path) -> None:
    setup = ("import signal\n"
             "def mine(signum, frame):\n"
             "    run.finish('cancelled')\n"
             "    sys.exit(7)\n"
             "signal.signal(signal.SIGTERM, mine)\n"
             "run2 = prunescope.init(name=sys.argv[3] + '-second', api=sys.argv[1], token=sys.argv[2], "
             "dir=sys.argv[4])\n"
             "run2.finish()")  # a second run started after the script's handler must not replace it
    done, _ = killed_script(api, tmp_path, "own-handler", setup=setup)
    assert done.returncode == 7, done.stderr
    detail, _ = stored(api, "own-handler")
    assert detail["status"] == "cancelled"


def test_sigterm_with_no_open_run_kills_as_before(api: LiveApi, tmp_path: Path) -> None:
    script = tmp_path / "ended.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import prunescope
        with prunescope.init(name="ended", api=sys.argv[1], token=sys.argv[2], dir=sys.argv[3]) as run:
            run.log(epoch=1, train_loss=0.5)
        print("finished", flush=True)
        time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script), api.url, TOKEN, str(tmp_path / "spool")],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "finished"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    detail, epochs = stored(api, "ended")
    assert detail["status"] == "completed" and epochs == [1]
