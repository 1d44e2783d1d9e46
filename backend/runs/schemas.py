"""Response shapes of the runs endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prunescope.contract.config import NO_NUL, ONE_LINE
from prunescope.contract.records import EpochRecord, WeightHistogram

# Ids are 32-bit INTEGER columns on PostgreSQL; a larger id in a URL is a clear 422, not a database error.
MAX_ID = 2**31 - 1
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="A run's id")]

SUMMARY_EXAMPLE: dict[str, Any] = {
    "id": 7, "name": "lenet300-dns", "tags": ["mnist"], "status": "running",
    "strategy": "magnitude/unstructured+splice", "preset": "dns", "device": "auto", "queue": "cpu",
    "model": "lenet300_100", "dataset": "mnist", "created_at": "2026-11-27T23:50:00Z",
    "started_at": "2026-11-27T23:50:02Z", "finished_at": None, "epochs_total": 30, "epochs_done": 12,
    "progress": 0.4, "eta_seconds": 95.0, "sparsity": 0.93, "test_acc": 0.978, "best_test_acc": 0.979,
    "worker": "cpu@host-4242", "attempts": 1, "cancel_requested": False, "error": None, "sweep_id": None,
    "kind": "managed",
}


class RunListItem(BaseModel):
    """A run as lists show it."""

    model_config = ConfigDict(json_schema_extra={"examples": [SUMMARY_EXAMPLE]})

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
    kind: str = Field(default="managed", description="managed (queued to workers) | tracked (logged by a script)")


class RunDetail(RunListItem):
    """A run with its config, notes and final summary."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        **SUMMARY_EXAMPLE, "notes": "", "summary": None,
        "config": {"name": "lenet300-dns", "model": {"name": "lenet300_100"}, "dataset": {"name": "mnist"},
                   "training": {"epochs": 30}, "pruning": {"target_sparsity": 0.98, "recovery": {"kind": "splice"}}},
    }]})

    config: dict[str, Any]
    notes: str
    summary: dict[str, Any] | None


class RunPatch(BaseModel):
    """The editable metadata of a run; fields left out stay as they are. The stored config is not changed."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "lenet300-dns-98", "tags": ["mnist", "keep"], "notes": "best so far"}]})

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=ONE_LINE)
    tags: list[Annotated[str, Field(min_length=1, max_length=64, pattern=ONE_LINE)]] | None = Field(
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
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [SUMMARY_EXAMPLE], "total": 1}]})

    items: list[RunListItem]
    total: int = Field(description="Runs matching the filters, over all pages")


class EpochList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"run_id": 7, "items": [{
        "epoch": 1, "train_loss": 0.31, "train_acc": 0.91, "test_loss": 0.15, "test_acc": 0.955, "lr": 0.1,
        "sparsity": 0.42, "target_sparsity": 0.45, "nonzero": 154_000, "total": 266_200, "epoch_seconds": 3.2,
        "samples_per_s": 18_750.0, "layers": [{"name": "fc1.weight", "shape": [300, 784], "sparsity": 0.44,
                                               "pruned": 103_000, "regrown": 0, "threshold": 0.012}]}]}]})

    run_id: int
    items: list[EpochRecord]


class LayerColumns(BaseModel):
    """One layer's stats over the run's epochs, aligned with `EpochColumns.columns["epoch"]` (null where the
    layer was not reported)."""

    shape: list[int] = Field(description="The weight tensor's shape, as last reported")
    sparsity: list[float | None]
    pruned: list[int | None]
    regrown: list[int | None]
    threshold: list[float | None]
    histogram: list[WeightHistogram | None]


class EpochColumns(BaseModel):
    """The same history as `EpochList`, one array per series (`?layout=columns`): every scalar of every epoch,
    cheaper to parse and ready for a data frame."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "run_id": 7, "columns": {"epoch": [1, 2], "test_acc": [0.955, 0.962], "sparsity": [0.42, 0.61]},
        "layers": {"fc1.weight": {"shape": [300, 784], "sparsity": [0.44, 0.63], "pruned": [103_000, 45_000],
                                  "regrown": [0, 0], "threshold": [0.012, 0.02], "histogram": [None, None]}},
        "extra": {}}]})

    run_id: int
    columns: dict[str, list[float | int | None]] = Field(description=(
        "epoch, train_loss, train_acc, test_loss, test_acc, lr, sparsity, target_sparsity, nonzero, total, "
        "epoch_seconds, samples_per_s, attempt: one value per recorded epoch, in epoch order"))
    layers: dict[str, LayerColumns] = Field(description="Per-layer stats by layer name, in first-reported order")
    extra: dict[str, list[float | None]] = Field(description="A tracked run's other scalars, by name")
