"""A tracked script killed with SIGTERM (a scheduler's time limit, `kill`, `docker stop`) loses nothing it logged;
a handler of the script's own, or of a framework installed after the run started (Lightning's), keeps the shutdown."""

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
    assert done.returncode == 128 + signal.SIGTERM, done.stderr  # 143, as a shell reports a SIGTERM'd process
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


def run_script(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script), *args], text=True, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_handler_installed_after_the_run_started_and_chaining_to_it_keeps_the_shutdown(api: LiveApi,
                                                                                          tmp_path: Path) -> None:
    # Lightning installs its handlers after the callback's init and chains to the one it finds: prunescope's
    # finished the run and killed the process, so Lightning's SIGTERMException path (on_exception, teardown) never ran.
    done = run_script(tmp_path, """
        import os, signal, sys, threading
        import prunescope
        run = prunescope.init(name="chained", api=sys.argv[1], token=sys.argv[2], dir=sys.argv[3])
        seen = threading.Event()
        previous = signal.getsignal(signal.SIGTERM)
        def framework(signum, frame):
            seen.set()
            previous(signum, frame)
        signal.signal(signal.SIGTERM, framework)
        run.log(epoch=1, train_loss=0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen.wait(5)
        run.log(epoch=2, train_loss=0.4)
        run.finish("cancelled")
        print("shut down by the framework")
    """, api.url, TOKEN, str(tmp_path / "spool"))
    assert done.returncode == 0 and "shut down by the framework" in done.stdout, done.stderr
    detail, epochs = stored(api, "chained")
    assert (detail["status"], epochs) == ("cancelled", [1, 2])


def test_sigterm_during_a_finish_in_another_thread_still_ends_the_process(tmp_path: Path) -> None:
    # The signal was deferred for that finish, then re-raised from its thread (ValueError: signal only works in main
    # thread), and the process lived on.
    done = run_script(tmp_path, """
        import os, signal, sys, threading, time
        import prunescope
        run = prunescope.init(name="threaded", offline=True, dir=sys.argv[1])
        close = run._sender.close
        run._sender.close = lambda body, timeout: (time.sleep(1.0), close(body, timeout))
        finisher = threading.Thread(target=run.finish)
        finisher.start()
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("still alive")
    """, str(tmp_path / "spool"))
    assert done.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), (done.returncode, done.stderr)
    assert "still alive" not in done.stdout


def test_sigterm_inside_run_log_holding_the_senders_lock_loses_nothing(tmp_path: Path) -> None:
    # The handler finished the run itself and waited on the sender, blocked on the lock log() held: 10 s, then the
    # process died with epochs 4-5 and the finish never spooled.
    spool = tmp_path / "spool"
    done = run_script(tmp_path, """
        import os, signal, sys, time
        import prunescope
        run = prunescope.init(name="locked", offline=True, dir=sys.argv[1])
        for epoch in range(1, 4):
            run.log(epoch=epoch, train_loss=1.0 / epoch)
        sender = run._sender
        sender.flush_seconds = 3600.0
        time.sleep(0.6)  # its wait now lasts an hour: the list below is not swapped out before epoch 5
        class Pending(list):
            def append(self, item):
                super().append(item)
                if item[0] == "epoch" and item[1][0]["epoch"] == 5:
                    os.kill(os.getpid(), signal.SIGTERM)  # while put() holds the sender's lock
        with sender._cond:
            sender._pending = Pending(sender._pending)
        run.log(epoch=4, train_loss=0.25)
        run.log(epoch=5, train_loss=0.2)
        print("not reached")
    """, str(spool))
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    [records] = list(spool.glob("*/records.jsonl"))
    text = records.read_text()
    assert [f'"epoch":{n},' in text for n in range(1, 6)] == [True] * 5
    assert '"status":"failed"' in text and "SIGTERM" in text
