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


def test_api_image_carries_no_torch_and_is_published_on_loopback_only() -> None:
    result = _config("config")
    assert result.returncode == 0, result.stderr
    assert "target: api" in result.stdout and "target: worker" in result.stdout
    assert "127.0.0.1" in result.stdout.split("ports:", 1)[1].split("volumes:", 1)[0]
    dockerfile = (ROOT / "Dockerfile").read_text()
    api_stage = dockerfile.split("AS worker", 1)[0]
    assert "[worker]" not in api_stage and "TORCH_INDEX\"" not in api_stage


def test_compose_tells_the_api_where_it_is_published() -> None:
    public = _config("config")
    assert "PRUNESCOPE_PUBLISHED_ON: 127.0.0.1" in public.stdout
    env_bind = {**os.environ, "PRUNESCOPE_BIND": "0.0.0.0"}
    binary = shutil.which("docker-compose")
    assert binary is not None
    result = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                            text=True, timeout=60, env={**env_bind, "PRUNESCOPE_WORKER_TOKEN": "t"})
    assert "PRUNESCOPE_PUBLISHED_ON: 0.0.0.0" in result.stdout


def test_api_refuses_a_public_bind_without_an_api_token(tmp_path: Path) -> None:
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESCOPE_")}
    env["PRUNESCOPE_HOME"] = str(tmp_path)
    refused = subprocess.run([sys.executable, "-m", "prunescope.cli", "api", "--host", "0.0.0.0", "--port", "1"],
                             env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert refused.returncode == 2
    assert "PRUNESCOPE_API_TOKEN" in refused.stderr
    published = subprocess.run([sys.executable, "-m", "prunescope.cli", "api", "--port", "1"],
                               env={**env, "PRUNESCOPE_PUBLISHED_ON": "0.0.0.0"}, capture_output=True, text=True,
                               timeout=120, cwd=ROOT)
    assert published.returncode == 2 and "0.0.0.0" in published.stderr


def test_exposure_rule_allows_loopback_and_token_guarded_binds() -> None:
    from prunescope.config import Settings

    assert Settings(api_token=None).exposure_problem("127.0.0.1") is None
    assert Settings(api_token=None, published_on="127.0.0.1").exposure_problem("0.0.0.0") is None
    assert Settings(api_token="secret").exposure_problem("0.0.0.0") is None
    assert Settings(api_token=None).exposure_problem("0.0.0.0") is not None
