"""Bodies of worker reports: defined once in the contract (`prunescope.contract.worker_api`)."""

from prunescope.contract.worker_api import (
    EpochReport,
    FinishReport,
    Heartbeat,
    ReportAck,
    StartRequest,
    StartResponse,
)

__all__ = ["EpochReport", "FinishReport", "Heartbeat", "ReportAck", "StartRequest", "StartResponse"]
