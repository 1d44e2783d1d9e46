"""Bodies of the tracking API: defined once in the contract (`prunescope.contract.tracking`)."""

from prunescope.contract.tracking import (
    BatchAck,
    TrackedBatch,
    TrackedFinish,
    TrackedPoint,
    TrackedRunCreate,
    TrackedRunCreated,
)

__all__ = ["BatchAck", "TrackedBatch", "TrackedFinish", "TrackedPoint", "TrackedRunCreate", "TrackedRunCreated"]
