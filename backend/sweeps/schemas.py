"""Request and response shapes of sweeps."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from backend.runs.schemas import ONE_LINE, RunListItem
from prunescope.contract.records import free_form_json

MAX_COMBINATIONS = 1000
DOTTED_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
GridPath = Annotated[str, Field(min_length=1, max_length=200, pattern=DOTTED_PATH)]
GridValues = Annotated[list[Any], Field(min_length=1, max_length=MAX_COMBINATIONS)]


def _bounded(what: str) -> AfterValidator:
    """Free-form JSON bounded as a tracked run's config is: deeper or larger would break storing and reading it."""
    return AfterValidator(lambda value: free_form_json(value, what))


class SweepCreate(BaseModel):
    """A base run config and a grid of dotted config paths to values: one run per combination."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
        "name": "dns-vs-gmp",
        "base": {"name": "lenet300", "dataset": {"name": "digits"}, "training": {"epochs": 10},
                 "pruning": {"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 1,
                                                                   "end_epoch": 8}}},
        "grid": {"pruning.target_sparsity": [0.9, 0.95], "pruning.recovery.kind": ["none", "splice"],
                 "training.seed": [0, 1]},
    }]})

    name: str = Field(min_length=1, max_length=200, pattern=ONE_LINE)
    base: Annotated[dict[str, Any], _bounded("base")] = Field(
        description="A run config (as `POST /api/runs` takes) every combination starts from")
    grid: Annotated[dict[GridPath, GridValues], _bounded("grid")] = Field(
        min_length=1, max_length=16,
        description=f"Dotted config paths to the values to try; at most {MAX_COMBINATIONS} combinations in all")


class SweepSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 1, "name": "dns-vs-gmp", "created_at": "2026-11-27T23:50:00Z", "runs_total": 8,
        "status_counts": {"completed": 3, "running": 1, "queued": 4}, "progress": 0.45}]})

    id: int
    name: str
    created_at: datetime
    runs_total: int
    status_counts: dict[str, int] = Field(description="How many of its runs are in each status")
    progress: float = Field(description="Epochs done over epochs configured, over all its runs, in [0, 1]")


class SweepDetail(SweepSummary):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 1, "name": "dns-vs-gmp", "created_at": "2026-11-27T23:50:00Z", "runs_total": 8,
        "status_counts": {"completed": 3, "running": 1, "queued": 4}, "progress": 0.45,
        "base": {"name": "lenet300"}, "grid": {"training.seed": [0, 1]}, "best_run_id": 3, "runs": []}]})

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    best_run_id: int | None = Field(description="The completed run with the highest final test accuracy")
    runs: list[RunListItem] = Field(description="Its runs, in grid order, each with its progress")


class SweepList(BaseModel):
    items: list[SweepSummary]
    total: int
