"""The worker API: the paths and bodies through which workers claim, record and finish runs.

Every call needs the worker token (`Authorization: Bearer`); every call about a claimed run also
carries the lease that `start` returned, in the `X-Prunescope-Lease` header.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prunescope.contract.config import NO_NUL
from prunescope.contract.queue import QueueName
from prunescope.contract.records import (
    MAX_LAYERS,
    EpochMetrics,
    LayerName,
    LayerStats,
    MaskPayload,
    RunSummary,
)
from prunescope.contract.sources import PLUGIN_NAME, PluginParam

LEASE_HEADER = "X-Prunescope-Lease"
WORKER_PREFIX = "/api/worker"
ArtifactName = Literal["checkpoint.pt", "model.pt"]
MAX_RUN_ID = 2**31 - 1
MAX_REPORT_BATCH = 256  # epoch reports in one batch request


MAX_OFFERED = 500  # plugin models, and datasets, one heartbeat names
MAX_PLUGIN_ERRORS = 100
MAX_SIGNATURE = 64  # keyword parameters of one plugin a heartbeat describes
MAX_PARAM_NAME = 64  # as long as a `model.params` key may be
# A plugin model or dataset a heartbeat offers: named as a run config may name it (the /api/options lists show it).
PluginName = Annotated[str, Field(pattern=PLUGIN_NAME)]


class WorkerPaths:
    """Paths of the worker API, relative to the API's base URL."""

    heartbeat = f"{WORKER_PREFIX}/heartbeat"

    @staticmethod
    def run(run_id: int) -> str:
        return f"{WORKER_PREFIX}/runs/{int(run_id)}"

    @classmethod
    def start(cls, run_id: int) -> str:
        return f"{cls.run(run_id)}/start"

    @classmethod
    def epochs(cls, run_id: int) -> str:
        return f"{cls.run(run_id)}/epochs"

    @classmethod
    def epoch_batch(cls, run_id: int) -> str:
        return f"{cls.epochs(run_id)}/batch"

    @classmethod
    def finish(cls, run_id: int) -> str:
        return f"{cls.run(run_id)}/finish"

    @classmethod
    def artifact(cls, run_id: int, name: ArtifactName) -> str:
        return f"{cls.run(run_id)}/artifacts/{name}"


class WorkerMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


WorkerName = str


class StartRequest(WorkerMessage):
    model_config = ConfigDict(json_schema_extra={"examples": [{"worker": "cpu-1@lab-07"}]})
    worker: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


class StartResponse(BaseModel):
    proceed: bool
    reason: str | None = None
    config: dict[str, Any] | None = None
    attempt: int = 0
    lease: str | None = Field(default=None, description="Carry it in X-Prunescope-Lease on every later call")
    resume: bool = Field(default=False, description="A checkpoint exists: download it and continue from it")
    epochs_done: int = 0


class EpochReport(EpochMetrics):
    """One epoch's record as a worker sends it, with every layer's mask snapshot."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "worker": "cpu-1@lab-07", "epoch": 3, "train_loss": 0.21, "test_acc": 0.962, "lr": 0.05, "sparsity": 0.9,
        "target_sparsity": 0.9, "nonzero": 26620, "total": 266200,
        "layers": [{"name": "fc1.weight", "shape": [300, 784], "sparsity": 0.91, "pruned": 1200, "regrown": 0,
                    "threshold": 0.031}]}]})

    worker: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    layers: list[LayerStats] = Field(default=[], max_length=MAX_LAYERS)
    masks: dict[LayerName, MaskPayload] = Field(default={}, max_length=MAX_LAYERS)


class EpochReports(BaseModel):
    """Several epochs' reports, recorded in one transaction: a worker whose epochs end faster than its
    `report_interval` sends those that waited together (in epoch order; a delta may follow its base here)."""

    model_config = ConfigDict(extra="forbid")
    epochs: list[EpochReport] = Field(min_length=1, max_length=MAX_REPORT_BATCH)


class ReportAck(BaseModel):
    cancel: bool = Field(description="The run should stop: cancel requested, or it is no longer this worker's")
    reason: str | None = None


FinishStatus = Literal["completed", "failed", "cancelled", "requeue"]


class FinishReport(WorkerMessage):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "worker": "cpu-1@lab-07", "status": "completed",
        "summary": {"final_test_acc": 0.97, "best_test_acc": 0.971, "final_sparsity": 0.9, "epochs_done": 10}}]})
    worker: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    status: FinishStatus = Field(
        description="`requeue`: the worker is shutting down; the run resumes from its checkpoint elsewhere")
    summary: RunSummary | None = None
    error: str | None = Field(default=None, max_length=20000, pattern=NO_NUL)
    epochs: list[EpochReport] | None = Field(
        default=None, min_length=1, max_length=MAX_REPORT_BATCH,
        description="The attempt's last epoch reports, recorded (all or none) before it ends, in the same "
                    "transaction: a short run's end is one request, not a batch and then the finish")


class PluginParamInfo(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_PARAM_NAME, pattern=NO_NUL)
    required: bool = False
    default: PluginParam = Field(default=None, description="The default, when it is a JSON scalar")

    @field_validator("default")
    @classmethod
    def _short(cls, value: PluginParam) -> PluginParam:
        return value[:200] if isinstance(value, str) else value


class PluginSignature(BaseModel):
    """The keyword parameters a plugin's build()/load() takes (`model.params`, `dataset.params`)."""

    params: list[PluginParamInfo] = Field(default=[], max_length=MAX_SIGNATURE)
    any: bool = Field(default=False, description="It takes **kwargs: any name is accepted")


class Heartbeat(WorkerMessage):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "worker": "cpu-1@lab-07", "hostname": "lab-07", "queues": ["cpu"], "device": "cpu", "run_id": 12}]})
    worker: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    hostname: str = Field(default="", max_length=200, pattern=NO_NUL)
    queues: list[QueueName] = Field(default=[], max_length=8)
    device: str = Field(default="cpu", max_length=16, pattern=NO_NUL)
    device_name: str = Field(default="", max_length=200, pattern=NO_NUL)
    gpu_memory_mb: float | None = Field(default=None, ge=0, le=2**40)
    run_id: int | None = Field(default=None, ge=1, le=MAX_RUN_ID)
    models: dict[PluginName, list[str]] = Field(default={}, max_length=MAX_OFFERED,
                                         description="Plugin models this worker can build: name -> prunable layers")
    datasets: list[PluginName] = Field(default=[], max_length=MAX_OFFERED,
                                       description="Plugin datasets this worker can load")
    model_params: dict[PluginName, PluginSignature] = Field(default={}, max_length=MAX_OFFERED,
                                                     description="Each plugin model's build() keyword parameters")
    dataset_params: dict[PluginName, PluginSignature] = Field(default={}, max_length=MAX_OFFERED,
                                                       description="Each plugin dataset's load() keyword parameters")
    plugin_errors: list[str] = Field(default=[], max_length=MAX_PLUGIN_ERRORS,
                                     description="Plugins that failed to import")
