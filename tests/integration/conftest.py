"""A real stack in processes: a private Redis, the API under uvicorn, Celery workers — on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prunescope import services

WORKER_TOKEN = "integration-worker-token"
CLI = "import sys; from prunescope.cli import main; sys.exit(main(sys.argv[1:]))"


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis_port = services.free_port()
        self.api_port = services.free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            "PRUNESCOPE_HOME": str(tmp / "home"),
            "PRUNESCOPE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PRUNESCOPE_API_URL": self.api_url,
            "PRUNESCOPE_WORKER_TOKEN": WORKER_TOKEN,
            "PRUNESCOPE_PORT": str(self.api_port),
            "PRUNESCOPE_HEARTBEAT_SECONDS": "0.5",
            "PRUNESCOPE_HEARTBEAT_TIMEOUT": "6",
            "PRUNESCOPE_CHECKPOINT_SECONDS": "0",  # short epochs: upload every epoch's checkpoint, as a kill test needs
            "PRUNESCOPE_DISPATCH_INTERVAL": "0.5",
            "PRUNESCOPE_REDISPATCH_SECONDS": "5",
            "OMP_NUM_THREADS": "1",
        }
        self.api_env: dict[str, str] = {}  # settings only the API process sees
        self.redis: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(base_url=self.api_url, timeout=30)

    def _spawn(self, args: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        handle = (self.tmp / log).open("ab")
        # As the `prunescope` console script runs it: import the CLI module, then call main.
        return subprocess.Popen([sys.executable, "-c", CLI, *args], env={**os.environ, **self.env, **(env or {})},
                                stdout=handle, stderr=subprocess.STDOUT)

    def start_redis(self) -> None:
        self.redis = services.start_redis(self.redis_port, self.tmp / "redis")

    def stop_redis(self) -> None:
        if self.redis:
            services.stop([self.redis])
            self.redis = None

    def start_api(self) -> None:
        self.api = self._spawn(["api"], "api.log", self.api_env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"API exited: {self.log('api.log')}")
            try:
                if self.http.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.log("api.log"))

    def stop_api(self) -> None:
        if self.api:
            services.stop([self.api])
            self.api = None

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn(["worker", "--queues", "cpu"], f"worker-{len(self.workers)}.log")
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{self.log(p.name)}" for p in sorted(self.tmp.glob("*.log")))

    def submit(self, config: dict[str, Any]) -> int:
        response = self.http.post("/api/runs", json=config)
        assert response.status_code == 201, response.text
        run_id: int = response.json()["id"]
        return run_id

    def run(self, run_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/api/runs/{run_id}").json()
        return body

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")

    def wait_status(self, run_id: int, statuses: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
        self.wait_for(lambda: self.run(run_id)["status"] in statuses, timeout, f"run {run_id} to be {statuses}")
        return self.run(run_id)

    def close(self) -> None:
        services.stop([*self.workers, *([self.api] if self.api else [])], timeout=10)
        self.stop_redis()
        self.http.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        s.start_redis()
        s.start_api()
        yield s
    finally:
        s.close()


def digits_run(epochs: int, **pruning: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "integration", "device": "cpu", "model": {"name": "lenet300_100"}, "dataset": {"name": "digits"},
        "training": {"epochs": epochs, "batch_size": 64, "lr": 0.05},
        "pruning": {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 1,
                                                          "end_epoch": max(1, epochs // 2), "every_steps": 5},
                    **pruning},
    }
    return config
