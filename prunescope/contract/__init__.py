"""The contract every part of prunescope shares: run config, records, statuses, queue and worker API.

Torch-free and server-free (pydantic and the standard library only): the API validates with it, the
worker sends it, the engine receives it, the CLI and the SDK speak it.
"""

from prunescope.contract.config import (
    PruningConfig,
    RunConfig,
    StdScaleThreshold,
    option_lists,
    parse_pruning,
    parse_run_config,
)
from prunescope.contract.records import EpochMetrics, EpochRecord, LayerStats, MaskPayload, RunSummary
from prunescope.contract.status import FINISHED_STATUSES, RunStatus, WorkerOutcome

__all__ = [
    "FINISHED_STATUSES",
    "EpochMetrics",
    "EpochRecord",
    "LayerStats",
    "MaskPayload",
    "PruningConfig",
    "RunConfig",
    "RunStatus",
    "RunSummary",
    "StdScaleThreshold",
    "WorkerOutcome",
    "option_lists",
    "parse_pruning",
    "parse_run_config",
]
