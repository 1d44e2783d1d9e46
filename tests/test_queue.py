"""The Celery app: JSON only, one run at a time, and runs routed to the queue their device needs."""

from __future__ import annotations

import pickle

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads

from prunescope.broker import make_celery
from prunescope.contract.queue import TRAIN_TASK, queue_for


def test_celery_speaks_json_only_and_refuses_pickled_messages() -> None:
    app = make_celery("redis://127.0.0.1:1/0")
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    evil = pickle.dumps({"task": TRAIN_TASK})
    with pytest.raises(ContentDisallowed):
        loads(evil, "application/x-python-serialize", "binary", accept=app.conf.accept_content)


def test_a_worker_takes_one_run_at_a_time() -> None:
    app = make_celery("redis://127.0.0.1:1/0")
    assert app.conf.worker_prefetch_multiplier == 1
    assert {q.name for q in app.conf.task_queues} == {"cpu", "gpu"}


@pytest.mark.parametrize(
    ("device", "gpu_online", "queue"),
    [("cpu", True, "cpu"), ("cuda", False, "gpu"), ("cuda", True, "gpu"), ("auto", True, "gpu"),
     ("auto", False, "cpu")],
)
def test_runs_go_to_the_queue_their_device_needs(device: str, gpu_online: bool, queue: str) -> None:
    assert queue_for(device, gpu_online) == queue
