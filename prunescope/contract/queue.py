"""The queue contract between the API (producer) and workers (consumers)."""

from __future__ import annotations

from typing import Literal

from prunescope.contract.config import Device

TRAIN_TASK = "prunescope.train_run"
QueueName = Literal["cpu", "gpu"]
QUEUES: tuple[QueueName, ...] = ("cpu", "gpu")


def queue_for(device: Device | str, gpu_worker_online: bool) -> QueueName:
    """`cuda` runs wait for a GPU worker; `auto` takes one when online, else the CPU queue."""
    if device == "cuda" or (device == "auto" and gpu_worker_online):
        return "gpu"
    return "cpu"
