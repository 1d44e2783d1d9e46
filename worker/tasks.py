"""The Celery task that trains a run, and the worker's heartbeat, started when the worker is ready."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from prunescope.config import get_settings
from prunescope.contract.queue import TRAIN_TASK
from worker.api_client import WorkerApi
from worker.celery_app import make_worker_celery
from worker.heartbeat import Heartbeat, WorkerIdentity, WorkerState
from worker.runner import execute_run

log = logging.getLogger("prunescope.worker")
app = make_worker_celery(get_settings().resolved_redis_url)
STATE = WorkerState()
_identity: WorkerIdentity | None = None
_heartbeat: Heartbeat | None = None
_api: WorkerApi | None = None


def consumed_queues(celery: Celery) -> list[str]:
    consume_from = celery.amqp.queues.consume_from
    return sorted(q.name for q in consume_from.values()) if consume_from else ["cpu"]


def identity() -> WorkerIdentity:
    global _identity
    if _identity is None:
        _identity = WorkerIdentity.detect(consumed_queues(app))
    return _identity


def worker_api() -> WorkerApi:
    """One API client for every run this process trains: a new httpx client costs 20-40 ms (its TLS context),
    as much as a short run's whole training, and a new connection besides."""
    global _api
    if _api is None:
        settings = get_settings()
        _api = WorkerApi(settings.api_url, settings.resolved_worker_token())
    return _api


@signals.worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    global _heartbeat
    _heartbeat = Heartbeat(get_settings(), identity(), STATE)
    _heartbeat.start()


@signals.worker_shutting_down.connect
def _stop_current_run(**_: Any) -> None:
    # Stop at the next step and hand the run back with its checkpoint (the next claim resumes from it)
    # instead of making shutdown wait for a whole training run.
    STATE.shut_down()


@app.task(name=TRAIN_TASK, ignore_result=True)
def train_run(run_id: int) -> str:
    """Train one run; the API knows everything else about it (config, attempts, checkpoint)."""
    return execute_run(int(run_id), get_settings(), identity(), STATE, worker_api()).value
