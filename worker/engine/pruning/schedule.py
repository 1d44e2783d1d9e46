"""When masks change and how sparse the network should be after each optimizer step.

Steps count completed optimizer steps (0 = before training; the end of epoch e is step e·steps_per_epoch).
Epochs count from 1. `start_epoch` s puts the first mask update at the end of epoch s (step s·spe; s = 0:
before the first step), `end_epoch` e reaches the target at the end of epoch e, and between them masks
update every `every_steps` steps counted from the first update, always including the end of e. So an
update "at epoch k" shows in epoch k's record, as the contract's `ScheduleConfig` says.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from prunescope.contract.config import PruningConfig, ScheduleConfig


@dataclass(frozen=True)
class SparsitySchedule:
    """Target sparsity over steps (Zhu & Gupta 2017 for `cubic`) and the steps that update masks."""

    kind: str
    final: float
    start_step: int
    end_step: int
    every_steps: int
    initial: float = 0.0
    anchor_step: int | None = None  # the update grid's origin when the first update had to move (see from_config)

    @property
    def origin(self) -> int:
        """Where the ramp and the update grid count from: `start_epoch`'s step, even when the first update waits
        for a training step (gradient and activation scores): those runs update on the same steps as the others."""
        return self.start_step if self.anchor_step is None else self.anchor_step

    @classmethod
    def from_config(cls, schedule: ScheduleConfig, *, final: float, epochs: int, steps_per_epoch: int,
                    needs_steps: bool = False) -> SparsitySchedule:
        start_epoch = schedule.start_epoch
        end_epoch = schedule.end_epoch_for(epochs)
        if end_epoch < start_epoch:
            raise ValueError(f"schedule.end_epoch ({end_epoch}) must be ≥ schedule.start_epoch ({start_epoch})")
        for label, value in (("start_epoch", start_epoch), ("end_epoch", end_epoch)):
            if value > epochs:
                raise ValueError(f"pruning.schedule.{label} ({value}) is after the last epoch ({epochs})")
        # Unset: once per epoch, whatever the dataset's size (a fixed count suits only one dataset).
        every = steps_per_epoch if schedule.every_steps is None else schedule.every_steps
        anchor = start_epoch * steps_per_epoch
        # Gradient/activation scores need one training step before they mean anything: the first update waits for
        # it, the later ones stay on the grid counted from `start_epoch` (they ran one step late before).
        start = max(anchor, 1) if needs_steps else anchor
        end = max(start, end_epoch * steps_per_epoch)
        return cls(kind=schedule.kind, final=final, start_step=start, end_step=end, every_steps=every,
                   anchor_step=anchor if anchor != start else None)

    def sparsity_at(self, step: int) -> float:
        """The target sparsity after `step` optimizer steps."""
        if step < self.start_step:
            return self.initial
        if self.kind in ("constant", "one_shot") or step >= self.end_step:
            return self.final
        progress = (step - self.origin) / (self.end_step - self.origin)
        if self.kind == "linear":
            return self.initial + (self.final - self.initial) * progress
        return self.final + (self.initial - self.final) * (1.0 - progress) ** 3

    def applied_at(self, step: int) -> float:
        """The target of the last update at or before `step`: what the masks hold after `step` steps (the curve
        between two updates is never applied, so a record shows the staircase the masks follow)."""
        if step < self.start_step or self.kind in ("constant", "one_shot") or step >= self.end_step:
            return self.sparsity_at(step)
        return self.sparsity_at(max(self.start_step, self.origin + (step - self.origin) // self.every_steps
                                    * self.every_steps))

    def updates_at(self, step: int) -> bool:
        """Whether the pruning schedule recomputes masks after `step` steps."""
        if self.kind == "one_shot":
            return step == self.start_step
        if step < self.start_step or step > self.end_step:
            return False
        return (step - self.origin) % self.every_steps == 0 or step in (self.start_step, self.end_step)

    def aligned(self, step: int) -> bool:
        """Whether `step` is on the schedule's update grid (used by recoveries that go on after end_step)."""
        return step >= self.start_step and (step - self.origin) % self.every_steps == 0


def warn_if_short(schedule: SparsitySchedule, config: PruningConfig, step: int, sparsity: float) -> None:
    """A schedule that never reached its target: almost always `steps_per_epoch` counted batches, not steps."""
    target = config.target_sparsity
    if target is None or config.n_m is not None or schedule.sparsity_at(step) >= target:
        return
    warnings.warn(
        f"Pruner.finalize(): the schedule reaches sparsity {target} after {schedule.end_step} optimizer steps, but "
        f"{step} ran (sparsity now {sparsity:.4f}). steps_per_epoch counts optimizer steps: with gradient "
        "accumulation it is len(loader) // accumulation steps, not len(loader)", stacklevel=3)


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
