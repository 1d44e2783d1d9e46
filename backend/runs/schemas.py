"""Response shapes of the runs endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


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
