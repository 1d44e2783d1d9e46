"""When masks change and how sparse the network should be at each optimizer step.

Steps count completed optimizer steps (0 = before training). Epochs are 1-based: pruning starts at
the beginning of `start_epoch` and reaches the target at the end of `end_epoch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULE_KINDS = ("one_shot", "linear", "cubic", "constant")


@dataclass(frozen=True)
class SparsitySchedule:
    """Target sparsity over steps (Zhu & Gupta 2017 for `cubic`) and the steps that update masks."""

    kind: str
    final: float
    start_step: int
    end_step: int
    every_steps: int
    initial: float = 0.0

    @classmethod
    def from_config(cls, schedule: dict, *, final: float, epochs: int, steps_per_epoch: int,
                    needs_gradient: bool = False) -> SparsitySchedule:
        kind = schedule.get("kind", "cubic")
        if kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
        start_epoch = int(schedule.get("start_epoch", 1))
        end_epoch = schedule.get("end_epoch")
        if end_epoch is None:
            end_epoch = max(start_epoch, math.ceil(0.75 * epochs))
        if end_epoch < start_epoch:
            raise ValueError(f"schedule.end_epoch ({end_epoch}) must be ≥ schedule.start_epoch ({start_epoch})")
        for label, value in (("start_epoch", start_epoch), ("end_epoch", end_epoch)):
            if value > epochs:
                raise ValueError(f"pruning.schedule.{label} ({value}) is after the last epoch ({epochs})")
        # Unset: once per epoch, whatever the dataset's size (a fixed count suits only one dataset).
        every_steps = schedule.get("every_steps")
        every = steps_per_epoch if every_steps is None else int(every_steps)
        if every < 1:
            raise ValueError("schedule.every_steps must be ≥ 1")
        start = 0 if kind == "constant" else max(0, start_epoch - 1) * steps_per_epoch
        # Gradient-based scores need one backward pass before they mean anything.
        if needs_gradient:
            start = max(start, 1)
        end = max(start, int(end_epoch) * steps_per_epoch)
        return cls(kind=kind, final=final, start_step=start, end_step=end, every_steps=every)

    def sparsity_at(self, step: int) -> float:
        """The target sparsity after `step` optimizer steps."""
        if self.kind == "constant":
            return self.final
        if step < self.start_step:
            return self.initial
        if self.kind == "one_shot" or step >= self.end_step:
            return self.final
        progress = (step - self.start_step) / (self.end_step - self.start_step)
        if self.kind == "linear":
            return self.initial + (self.final - self.initial) * progress
        return self.final + (self.initial - self.final) * (1.0 - progress) ** 3

    def updates_at(self, step: int) -> bool:
        """Whether the pruning schedule recomputes masks after `step` steps."""
        if self.kind == "one_shot":
            return step == self.start_step
        if step < self.start_step or step > self.end_step:
            return False
        return (step - self.start_step) % self.every_steps == 0 or step == self.end_step

    def aligned(self, step: int) -> bool:
        """Whether `step` is on the schedule's update grid (used by recoveries that go on after end_step)."""
        return step >= self.start_step and (step - self.start_step) % self.every_steps == 0


@dataclass(frozen=True)
class DropSchedule:
    """How much of each layer SET/RigL drop and regrow per update; cosine decay as in RigL."""

    drop_fraction: float
    decay: str
    every_steps: int
    end_step: int

    def updates_at(self, step: int) -> bool:
        return 0 < step <= self.end_step and step % self.every_steps == 0

    def fraction_at(self, step: int) -> float:
        if self.decay == "constant" or self.end_step <= 0:
            return self.drop_fraction
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * min(step, self.end_step) / self.end_step))
