"""The worker's Celery app: the shared broker settings plus this package's tasks. Imports no torch."""

from __future__ import annotations

from celery import Celery

from prunescope.broker import make_celery


def make_worker_celery(broker_url: str) -> Celery:
    return make_celery(broker_url, include=["worker.tasks"])
