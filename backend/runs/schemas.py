"""Response shapes of the runs endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Ids are 32-bit INTEGER columns on PostgreSQL; a larger id in a URL is a clear 422, not a database error.
MAX_ID = 2**31 - 1
# PostgreSQL text cannot hold NUL bytes: refuse them up front (422) instead of failing in the database (500).
NO_NUL = r"^[^\x00]*$"
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="A run's id")]


class RunSummary(BaseModel):
    """A run as lists show it."""

    id: int
    name: str
    tags: list[str]
    status: str = Field(description="queued | running | completed | failed | cancelled")
    strategy: str
    preset: str | None
    device: str
    queue: str | None
    model: str
    dataset: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    epochs_total: int
    epochs_done: int
    progress: float = Field(description="epochs_done / epochs_total, in [0, 1]")
    eta_seconds: float | None
    sparsity: float | None = Field(description="overall sparsity at the newest epoch")
    test_acc: float | None
    best_test_acc: float | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    error: str | None
    sweep_id: int | None


class RunDetail(RunSummary):
    """A run with its config, notes and final summary."""

    config: dict[str, Any]
    notes: str
    summary: dict[str, Any] | None


class RunPatch(BaseModel):
    """The editable metadata of a run; fields left out stay as they are. The stored config is not changed."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "lenet300-dns-98", "tags": ["mnist", "keep"], "notes": "best so far"}]})

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    tags: list[Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]] | None = Field(
        default=None, max_length=32)
    notes: str | None = Field(default=None, max_length=20000, pattern=NO_NUL)

    @field_validator("name", "tags", "notes", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Leaving a field out keeps it; an explicit null would erase a required column.
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep it")
        return value


class RunList(BaseModel):
    items: list[RunSummary]
    total: int


class LayerStats(BaseModel):
    name: str
    shape: list[int]
    sparsity: float
    pruned: int = 0
    regrown: int = 0
    threshold: float | None = None


class EpochRecord(BaseModel):
    """One epoch as the worker measured it."""

    epoch: int
    train_loss: float | None = None
    train_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    lr: float | None = None
    sparsity: float | None = None
    target_sparsity: float | None = None
    nonzero: int | None = None
    total: int | None = None
    epoch_seconds: float | None = None
    samples_per_s: float | None = None
    layers: list[LayerStats] = []


class EpochList(BaseModel):
    run_id: int
    items: list[EpochRecord]
