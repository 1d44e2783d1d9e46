"""The Celery settings the API (producer) and workers (consumers) share: JSON only, queues `cpu` and `gpu`."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from prunescope.contract.queue import QUEUES


def make_celery(broker_url: str, *, include: list[str] | None = None) -> Celery:
    app = Celery("prunescope", broker=broker_url, include=include or [])
    app.conf.update(
        # JSON only: a pickled message from the broker could run arbitrary code in the worker.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        event_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="cpu",
        # A worker takes one run at a time; the API, not the broker, tracks what is running
        # (heartbeats), so the message is acknowledged when the task starts.
        worker_prefetch_multiplier=1,
        task_acks_late=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        broker_transport_options={"socket_connect_timeout": 2, "socket_timeout": 5},
        worker_send_task_events=False,
    )
    return app
