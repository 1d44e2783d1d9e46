"""How a tracking script's end decides its open runs' status: SIGTERM and `sys.exit` (the SDK's `Run` uses these).

- SIGTERM (a scheduler's time limit or preemption, `kill`, `docker stop`) killed a script at once: the records logged
  in the sender's last fraction of a second were lost, and the run stayed `running` until the API's heartbeat
  timeout failed it. Where the script has no SIGTERM handler of its own (installed from the main thread when the
  first run starts), SIGTERM raises `Terminated` in the main thread: `with` blocks and `finally` clauses run and the
  open runs end `failed`, naming the signal. The handler does no work itself (a finish inside it could wait on a
  lock the interrupted code holds). A handler installed later that chains to this one (Lightning's) keeps the
  shutdown to itself; with no run open, the process dies of SIGTERM as without the handler.
- `sys.exit(status)` with runs still open at the interpreter's exit ended them `completed`; the main thread's
  status is now kept, and a status other than 0 or None ends them `failed`. One the script caught and went on from
  (it starts or logs a run afterwards), or a parent's that a forked child inherited, does not count.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn


class Terminated(SystemExit):
    """SIGTERM in a script without a handler of its own; the process exits with 128 + 15 (143), the status a shell
    reports for a process SIGTERM killed."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"the process received {signal.Signals(self.signum).name}"


class _State:
    exit_status: tuple[Any] | None = None  # what the main thread last called sys.exit with
    finishing_main = 0  # Run.finish calls under way in the main thread
    deferred: int | None = None  # a SIGTERM that came during one of them
    terminated: int | None = None  # the signal that is ending the process
    exiting = False  # the runs still open are being finished at the interpreter's exit
    has_open_runs: Callable[[], bool] = staticmethod(lambda: False)


STATE = _State()


def install(has_open_runs: Callable[[], bool]) -> None:
    """When a run starts: the SIGTERM handler (main thread, no handler of the script's) and the sys.exit wrapper."""
    STATE.has_open_runs = has_open_runs
    script_goes_on()
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    if not getattr(sys.exit, "_prunescope", False):
        original = sys.exit

        def exit(status: Any = None) -> NoReturn:
            if threading.current_thread() is threading.main_thread():  # in a thread it ends the thread only
                STATE.exit_status = (status,)
            original(status)

        exit._prunescope = True  # type: ignore[attr-defined]
        sys.exit = exit


def script_goes_on() -> None:
    """The script runs on (it starts or logs a run): an exit it caught did not end it."""
    STATE.exit_status = STATE.terminated = None


os.register_at_fork(after_in_child=script_goes_on)


@contextmanager
def finishing() -> Iterator[None]:
    """Around a run's finish: a SIGTERM meanwhile waits for it (interrupted, it could lose its records), then acts."""
    main = threading.current_thread() is threading.main_thread()
    STATE.finishing_main += main
    try:
        yield
    finally:
        STATE.finishing_main -= main
        if main and not STATE.finishing_main and STATE.deferred is not None and not STATE.exiting:
            _terminate(STATE.deferred)


def exit_verdict() -> tuple[str, str | None]:
    """At the interpreter's exit, how the runs still open end: (status, error)."""
    STATE.exiting = True
    signum = STATE.terminated or STATE.deferred
    if signum is not None:
        return "failed", f"{Terminated(signum)} while the run was open"
    status = STATE.exit_status
    if status is not None and status[0] not in (0, None):
        return "failed", f"SystemExit: the script called sys.exit({status[0]!r})"
    return "completed", None


def _on_sigterm(signum: int, frame: Any) -> None:
    if signal.getsignal(signum) is not _on_sigterm:
        return  # called by a handler installed after this one (Lightning's): the shutdown is that handler's
    if not STATE.has_open_runs():
        signal.signal(signum, signal.SIG_DFL)  # nothing to finish: die of the signal, as without this handler
        os.kill(os.getpid(), signum)
        return
    if STATE.finishing_main:
        STATE.deferred = signum
        return
    _terminate(signum)


def _terminate(signum: int) -> NoReturn:
    STATE.deferred, STATE.terminated = None, signum
    raise Terminated(signum)
