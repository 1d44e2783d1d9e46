"""Run statuses and worker outcomes, defined once (the dashboard reads them from `/api/options`)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
ACTIVE_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


class WorkerOutcome(StrEnum):
    """How a worker's attempt at a run ended; the first three are also run statuses."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REQUEUE = "requeue"  # the worker shut down cleanly: the run resumes from its checkpoint elsewhere
    SKIPPED = "skipped"  # the API did not give this worker the run (cancelled, finished, or alive elsewhere)
