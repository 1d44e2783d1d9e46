"""The tracking API: how a user's own script (the SDK) creates a tracked run and records it in batches.

Writes need the API token; every call about a created run also carries its lease in `X-Prunescope-Lease`
(the header worker runs use), so only the process that created a run can write to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from prunescope.contract.config import MAX_EPOCHS, NO_NUL, ONE_LINE, PruningConfig, Tag
from prunescope.contract.records import (
    MAX_FREE_FORM_DEPTH,
    MAX_FREE_FORM_ITEMS,
    MAX_LAYERS,
    EpochMetrics,
    LayerName,
    LayerStats,
    MaskPayload,
    RunSummary,
    check_text,
    free_form_json,
)

TRACKING_PREFIX = "/api/tracked-runs"
LEASE_PATTERN = r"^[A-Za-z0-9_-]{32,64}$"
MAX_BATCH_EPOCHS = 1000
MAX_BATCH_POINTS = 10_000
MAX_EXTRA_SCALARS = 500
MAX_POINT_SCALARS = 200
MAX_STEP = 2**31 - 1
MAX_CONFIG_DEPTH = MAX_FREE_FORM_DEPTH
MAX_CONFIG_ITEMS = MAX_FREE_FORM_ITEMS


class TrackingPaths:
    """Paths of the tracking API, relative to the API's base URL."""

    create = TRACKING_PREFIX

    @staticmethod
    def run(run_id: int) -> str:
        return f"{TRACKING_PREFIX}/{int(run_id)}"

    @classmethod
    def batch(cls, run_id: int) -> str:
        return f"{cls.run(run_id)}/batch"

    @classmethod
    def finish(cls, run_id: int) -> str:
        return f"{cls.run(run_id)}/finish"

    @classmethod
    def points(cls, run_id: int) -> str:
        return f"{cls.run(run_id)}/points"


def _clean_name(value: str) -> str:
    check_text(value, "name")
    return value


ScalarName = Annotated[str, Field(min_length=1, max_length=100, pattern=ONE_LINE), AfterValidator(_clean_name)]
Scalar = float | None  # JSON has no NaN: the SDK sends a non-finite value as null


class TrackingMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


EARLIEST_SCRIPT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)


def _script_time(value: datetime) -> datetime:
    """A time the script's clock gave (a run spooled offline and uploaded later keeps when it ran): in UTC, from
    2000 on, and not ahead of the server's clock by more than a few minutes."""
    moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if moment < EARLIEST_SCRIPT_TIME or moment > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError(f"{value.isoformat()} is before 2000 or ahead of the server's clock")
    return moment


ScriptTime = Annotated[datetime, AfterValidator(_script_time)]


class TrackedRunCreate(TrackingMessage):
    """Create a tracked run; repeating the request with the same `lease` answers the same run (idempotent)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
        "name": "resnet20-rigl", "tags": ["cifar"], "config": {"arch": "resnet20", "lr": 0.1},
        "host": "laptop:4242"}]})

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=ONE_LINE),
                    AfterValidator(_clean_name)] = "untitled"
    tags: list[Annotated[Tag, AfterValidator(_clean_name)]] = Field(default=[], max_length=32)
    config: Annotated[dict[str, Any], AfterValidator(free_form_json)] = Field(
        default={}, description="The script's own hyperparameters, kept as given (free-form JSON)")
    lease: str | None = Field(default=None, pattern=LEASE_PATTERN,
                              description="A secret the client chose (the SDK does, so a retried create is safe); "
                                          "the server makes one when absent")
    host: Annotated[str, Field(max_length=200, pattern=NO_NUL), AfterValidator(_clean_name)] = Field(
        default="", description="Where the script runs, shown as the run's worker")
    epochs: int | None = Field(default=None, ge=1, le=MAX_EPOCHS, description="Epochs the script plans to run")
    pruning: PruningConfig | None = Field(default=None, description="A run config's `pruning` block, when known")
    started_at: ScriptTime | None = Field(
        default=None, description="When the script started the run, for one uploaded later by `prunescope sync` "
                                  "(default: now)")


class TrackedRunCreated(BaseModel):
    id: int
    lease: str = Field(description="Carry it in X-Prunescope-Lease on every later call for this run")
    status: str
    created: bool = Field(description="False when this lease had already created the run (a retried request)")


class TrackedEpoch(EpochMetrics):
    """One epoch a script logged: the record's columns, any other scalars, per-layer stats and masks."""

    layers: list[LayerStats] = Field(default=[], max_length=MAX_LAYERS)
    masks: dict[LayerName, MaskPayload] = Field(default={}, max_length=MAX_LAYERS)
    extra: dict[ScalarName, Scalar] = Field(default={}, max_length=MAX_EXTRA_SCALARS,
                                            description="Scalars that are not record columns, kept as logged")


class TrackedPoint(TrackingMessage):
    """Scalars logged inside an epoch at a global step (a long epoch charts live)."""

    step: int = Field(ge=0, le=MAX_STEP)
    epoch: int | None = Field(default=None, ge=1, le=MAX_EPOCHS, description="The epoch the step belongs to")
    values: dict[ScalarName, Scalar] = Field(max_length=MAX_POINT_SCALARS)


class TrackedBatch(TrackingMessage):
    """Many records in one request and one transaction; replays never duplicate (run+epoch, run+step)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "epochs": [{"epoch": 1, "train_loss": 0.4, "test_acc": 0.93, "extra": {"grad_norm": 2.5}}],
        "points": [{"step": 120, "epoch": 1, "values": {"loss": 0.38}}]}]})

    epochs: list[TrackedEpoch] = Field(default=[], max_length=MAX_BATCH_EPOCHS)
    points: list[TrackedPoint] = Field(default=[], max_length=MAX_BATCH_POINTS)
    pruning: PruningConfig | None = Field(default=None, description="The watched pruner's block (sets the strategy)")
    epochs_total: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)


class BatchAck(BaseModel):
    cancel: bool = Field(description="Cancel was requested from the dashboard: the script should stop")
    reason: str | None = None
    epochs_done: int
    stored_epochs: int
    stored_points: int


TrackedStatus = Literal["completed", "failed", "cancelled"]


class TrackedFinish(TrackingMessage):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "completed"}]})
    status: TrackedStatus
    error: str | None = Field(default=None, max_length=20000, pattern=NO_NUL)
    summary: RunSummary | None = None
    finished_at: ScriptTime | None = Field(
        default=None, description="When the script ended the run, for one uploaded later by `prunescope sync` "
                                  "(default: now)")
