"""The tracking API: how a user's own script (the SDK) creates a tracked run and records it in batches.

Writes need the API token; every call about a created run also carries its lease in `X-Prunescope-Lease`
(the header worker runs use), so only the process that created a run can write to it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from prunescope.contract.config import MAX_EPOCHS, NO_NUL, PruningConfig, Tag
from prunescope.contract.records import (
    MAX_LAYERS,
    EpochMetrics,
    LayerName,
    LayerStats,
    MaskPayload,
    RunSummary,
)

TRACKING_PREFIX = "/api/tracked-runs"
LEASE_PATTERN = r"^[A-Za-z0-9_-]{32,64}$"
MAX_BATCH_EPOCHS = 1000
MAX_BATCH_POINTS = 10_000
MAX_EXTRA_SCALARS = 500
MAX_POINT_SCALARS = 200
MAX_STEP = 2**31 - 1
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_ITEMS = 10_000


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


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{where} contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate cannot be stored as UTF-8
        raise ValueError(f"{where} is not valid Unicode (lone surrogate)") from exc


def free_form_json(value: dict[str, Any]) -> dict[str, Any]:
    """A user's free-form config: JSON of bounded depth and size whose strings a database can store."""
    budget = [MAX_CONFIG_ITEMS]

    def visit(node: Any, depth: int, path: str) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"config holds more than {MAX_CONFIG_ITEMS} values")
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"config is nested deeper than {MAX_CONFIG_DEPTH} levels at {path}")
        if isinstance(node, str):
            _check_text(node, f"config value at {path}")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"config value at {path} is not a finite number")
        elif isinstance(node, int) and not isinstance(node, bool) and not -(2**63) <= node < 2**63:
            raise ValueError(f"config value at {path} is an integer beyond 64 bits")
        elif isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    raise ValueError(f"config keys must be strings at {path}")
                _check_text(key, f"config key {path}.{key[:40]!r}")
                visit(item, depth + 1, f"{path}.{key[:40]}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                visit(item, depth + 1, f"{path}[{i}]")
        elif node is not None and not isinstance(node, bool | int | float):
            raise ValueError(f"config value at {path} is not JSON ({type(node).__name__})")

    visit(value, 0, "config")
    return value


def _clean_name(value: str) -> str:
    _check_text(value, "name")
    return value


ScalarName = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL), AfterValidator(_clean_name)]
Scalar = float | None  # JSON has no NaN: the SDK sends a non-finite value as null


class TrackingMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TrackedRunCreate(TrackingMessage):
    """Create a tracked run; repeating the request with the same `lease` answers the same run (idempotent)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
        "name": "resnet20-rigl", "tags": ["cifar"], "config": {"arch": "resnet20", "lr": 0.1},
        "host": "laptop:4242"}]})

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL), AfterValidator(_clean_name)] = "untitled"
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
    status: TrackedStatus
    error: str | None = Field(default=None, max_length=20000, pattern=NO_NUL)
    summary: RunSummary | None = None
