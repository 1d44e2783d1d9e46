"""docker-compose.yml stays valid (Debian's docker-compose checks it; no engine is needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import missing_dependency

ROOT = Path(__file__).resolve().parent.parent


def _config(*args: str, token: str | None = "t0ken") -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        missing_dependency("docker-compose", "`make test` installs Debian's package as root")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESCOPE_")}
    if token:
        env["PRUNESCOPE_WORKER_TOKEN"] = token
    return subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_compose_file_is_valid_with_every_profile() -> None:
    for profile in ([], ["--profile", "gpu"], ["--profile", "postgres"]):
        result = _config(*profile, "config", "-q")
        assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_worker_token() -> None:
    result = _config("config", "-q", token=None)
    assert result.returncode != 0
    assert "PRUNESCOPE_WORKER_TOKEN" in result.stderr


def test_gpu_worker_reserves_an_nvidia_device() -> None:
    result = _config("--profile", "gpu", "config")
    assert "driver: nvidia" in result.stdout
    assert "--queues" in result.stdout and "gpu" in result.stdout
