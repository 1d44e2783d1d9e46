"""Bodies of worker reports."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.runs.schemas import LayerStats


class WorkerReport(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StartRequest(WorkerReport):
    worker: str = Field(min_length=1, max_length=200)


class StartResponse(BaseModel):
    proceed: bool
    reason: str | None = None
    config: dict[str, Any] | None = None
    attempt: int = 0
    resume: bool = Field(default=False, description="A checkpoint exists: download it and continue from it")
    epochs_done: int = 0


class MaskPayload(WorkerReport):
    shape: list[int] = Field(max_length=8)
    encoding: Literal["key", "delta"]
    data: str = Field(description="base64 of zlib-compressed packbits (XOR with the previous epoch for `delta`)")


class EpochReport(WorkerReport):
    worker: str = Field(min_length=1, max_length=200)
    epoch: int = Field(ge=1, le=1000)
    train_loss: float | None = None
    train_acc: float | None = Field(default=None, ge=0, le=1)
    test_loss: float | None = None
    test_acc: float | None = Field(default=None, ge=0, le=1)
    lr: float | None = None
    sparsity: float | None = Field(default=None, ge=0, le=1)
    target_sparsity: float | None = Field(default=None, ge=0, le=1)
    nonzero: int | None = Field(default=None, ge=0)
    total: int | None = Field(default=None, ge=0)
    epoch_seconds: float | None = Field(default=None, ge=0)
    samples_per_s: float | None = Field(default=None, ge=0)
    layers: list[LayerStats] = Field(default=[], max_length=1000)
    masks: dict[str, MaskPayload] = Field(default={}, max_length=1000)


class ReportAck(BaseModel):
    cancel: bool = Field(description="The run should stop: cancel requested, or it is no longer this worker's")
    reason: str | None = None


class FinishReport(WorkerReport):
    worker: str = Field(min_length=1, max_length=200)
    status: Literal["completed", "failed", "cancelled", "requeue"] = Field(
        description="`requeue`: the worker is shutting down; the run resumes from its checkpoint elsewhere")
    summary: dict[str, Any] | None = None
    error: str | None = Field(default=None, max_length=20000)


class Heartbeat(WorkerReport):
    worker: str = Field(min_length=1, max_length=200)
    hostname: str = Field(default="", max_length=200)
    queues: list[str] = Field(default=[], max_length=8)
    device: str = Field(default="cpu", max_length=16)
    device_name: str = Field(default="", max_length=200)
    gpu_memory_mb: float | None = Field(default=None, ge=0)
    run_id: int | None = None
