"""Bodies of worker reports: defined once in the contract (`prunescope.contract.worker_api`)."""

from prunescope.contract.worker_api import (
    EpochReport,
    EpochReports,
    FinishReport,
    Heartbeat,
    ReportAck,
    StartRequest,
    StartResponse,
)

__all__ = ["EpochReport", "EpochReports", "FinishReport", "Heartbeat", "ReportAck", "StartRequest", "StartResponse"]
