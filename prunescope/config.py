"""The one settings object: every knob comes from a PRUNESCOPE_* environment variable."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class Settings(BaseSettings):
    """prunescope's configuration; unset paths live under `home`."""

    model_config = SettingsConfigDict(env_prefix="PRUNESCOPE_", extra="ignore")

    home: Path = Field(default=Path.home() / ".prunescope",
                       description="Where the default database, data and artifacts live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in home.")
    redis_url: str | None = Field(default=None, description="Celery broker; unset: `up` starts an embedded Redis.")
    api_url: str = Field(default="http://127.0.0.1:8000", description="Where workers and the CLI reach the API.")
    worker_token: str | None = Field(default=None,
                                     description="Shared secret of worker reports; default: a file in home.")
    api_token: str | None = Field(default=None, description="When set, write endpoints need `Authorization: Bearer`.")
    data_dir: Path | None = Field(default=None, description="Datasets (MNIST IDX files, CIFAR batches).")
    plugins: str = Field(default="", description="Comma-separated modules a worker imports for plugin models "
                                                 "and datasets (besides installed entry points).")
    artifact_dir: Path | None = Field(default=None, description="Checkpoints and pruned models.")
    host: str = "127.0.0.1"
    published_on: str | None = Field(default=None, description=(
        "The address the API is reachable on from other machines when it differs from `host` (docker-compose sets "
        "it from PRUNESCOPE_BIND); a non-loopback address needs PRUNESCOPE_API_TOKEN."))
    port: int = 8000
    allowed_hosts: str | None = Field(default=None, description=(
        "Comma-separated host names the API answers for (the Host header); `*` allows any. Default: 127.0.0.1, "
        "localhost, ::1 and `host` (any, when `host` is 0.0.0.0 or ::)."))
    body_timeout: float = Field(default=30.0, gt=0, description=(
        "Seconds a request body may stall (no bytes arriving) before the API answers 408 and closes."))
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="How often workers send heartbeats.")
    heartbeat_timeout: float = Field(default=60.0, gt=0, description="A running run silent this long is requeued.")
    report_retry_seconds: float = Field(default=600.0, gt=0, description=(
        "How long a worker retries one report or upload while the API is unreachable (or failing) before it "
        "gives the run up; the run then resumes elsewhere from its checkpoint after the heartbeat timeout."))
    checkpoint_seconds: float = Field(default=10.0, ge=0, description=(
        "A worker uploads a running run's checkpoint at most this often (0: after every epoch), so short epochs "
        "do not each pay an upload; a run resumed after a crash re-trains at most one epoch, or this many seconds "
        "of training when epochs are shorter. A clean hand-back always uploads the newest checkpoint."))
    report_interval: float = Field(default=0.1, ge=0, le=60, description=(
        "A worker sends a run's epoch reports at most this often (seconds): epochs that end faster wait and go "
        "together, in one request and one transaction (0: each as soon as the one before it is delivered; reports "
        "that pile up meanwhile still go together). A report never waits when the run ends or hands back."))
    redispatch_seconds: float = Field(default=120.0, gt=0, description="Requeue a queued run the broker lost.")
    max_attempts: int = Field(default=3, ge=1, description="Starts of one run before it ends failed.")
    dispatch_interval: float = Field(default=2.0, gt=0, description="How often the API retries queueing runs.")
    max_body_bytes: int = Field(default=1_000_000, description="Largest request body on user endpoints.")
    max_report_bytes: int = Field(default=512 * 1024 * 1024, description="Largest worker report or upload.")

    def exposure_problem(self, host: str | None = None) -> str | None:
        """Why the API must not start: reachable beyond this machine with no API token to guard its writes."""
        exposed = self.published_on or host or self.host
        if self.api_token or exposed in LOOPBACK:
            return None
        return (f"the API would be reachable on {exposed} with no API token: anyone who reaches it could submit, "
                "cancel and delete runs. Set PRUNESCOPE_API_TOKEN, or bind to 127.0.0.1.")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'prunescope.db'}"

    @property
    def resolved_redis_url(self) -> str:
        return self.redis_url or "redis://127.0.0.1:6379/0"

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir or self.home / "data"

    @property
    def resolved_artifact_dir(self) -> Path:
        return self.artifact_dir or self.home / "artifacts"

    def resolved_worker_token(self) -> str:
        """The worker token: from the environment, or a random one kept in home (shared by API and worker)."""
        if self.worker_token:
            return self.worker_token
        path = self.home / "worker_token"
        if path.exists():
            return path.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        # O_EXCL: two processes starting together agree on the first file written.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(token)
        return token


@lru_cache
def get_settings() -> Settings:
    return Settings()
