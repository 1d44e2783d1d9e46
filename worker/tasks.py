"""The Celery task that trains a run, and the worker's heartbeat, started when the worker is ready."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from prunescope.config import get_settings
from prunescope.contract.queue import TRAIN_TASK
from worker.celery_app import make_worker_celery
from worker.runner import SHUTDOWN, Heartbeat, WorkerIdentity, WorkerState, execute_run

log = logging.getLogger("prunescope.worker")
app = make_worker_celery(get_settings().resolved_redis_url)
STATE = WorkerState()
_identity: WorkerIdentity | None = None


def identity() -> WorkerIdentity:
    global _identity
    if _identity is None:
        queues = sorted(q.name for q in app.amqp.queues.consume_from.values()) if app.amqp.queues.consume_from \
            else ["cpu"]
        _identity = WorkerIdentity.detect(queues)
    return _identity


@signals.worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    Heartbeat(get_settings(), identity(), STATE).start()


@signals.worker_shutting_down.connect
def _stop_current_run(**_: Any) -> None:
    # Stop at the next step and hand the run back (it resumes from its checkpoint) instead of
    # making shutdown wait for a whole training run.
    STATE.request_stop(SHUTDOWN)


@app.task(name=TRAIN_TASK, ignore_result=True)
def train_run(run_id: int) -> str:
    """Train one run; the API knows everything else about it (config, attempts, checkpoint)."""
    return execute_run(int(run_id), get_settings(), identity(), STATE)
