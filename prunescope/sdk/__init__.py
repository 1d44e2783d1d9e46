"""The tracking SDK: record any PyTorch training script (with its masks) as a prunescope run."""

from prunescope.sdk.run import Run, init
from prunescope.sdk.spool import sync
from prunescope.sdk.transport import RunCancelled, TrackingError

__all__ = ["Run", "RunCancelled", "TrackingError", "init", "sync"]
