"""Sparsity schedules: when masks update (start_epoch/end_epoch/every_steps), Zhu & Gupta's cubic, drop decay."""

from __future__ import annotations

import math
from typing import Any

import pytest

from prunescope.contract.config import ScheduleConfig
from worker.engine.pruning.schedule import DropSchedule, SparsitySchedule


def schedule(final: float, epochs: int, steps_per_epoch: int, **fields: Any) -> SparsitySchedule:
    return SparsitySchedule.from_config(ScheduleConfig(**fields), final=final, epochs=epochs,
                                        steps_per_epoch=steps_per_epoch)


def test_cubic_schedule_matches_zhu_gupta_formula_from_the_end_of_start_epoch() -> None:
    cubic = schedule(0.9, 8, 10, kind="cubic", start_epoch=2, end_epoch=6, every_steps=5)
    t0, n_dt = 20, 40  # starts at the end of epoch 2, reaches the target at the end of epoch 6
    for t in range(0, 80):
        if t < t0:
            expected = 0.0
        elif t >= t0 + n_dt:
            expected = 0.9
        else:
            expected = 0.9 + (0.0 - 0.9) * (1 - (t - t0) / n_dt) ** 3
        assert cubic.sparsity_at(t) == pytest.approx(expected, abs=1e-12)


def test_linear_one_shot_and_constant_schedules() -> None:
    kw: dict[str, Any] = {"final": 0.5, "epochs": 4, "steps_per_epoch": 10}
    linear = schedule(kind="linear", start_epoch=1, end_epoch=3, **kw)
    assert linear.sparsity_at(10) == 0.0 and linear.sparsity_at(20) == pytest.approx(0.25)
    one_shot = schedule(kind="one_shot", start_epoch=3, **kw)
    assert one_shot.sparsity_at(29) == 0.0 and one_shot.sparsity_at(30) == 0.5
    assert [t for t in range(41) if one_shot.updates_at(t)] == [30]  # the end of epoch 3
    from_start = schedule(kind="constant", start_epoch=0, **kw)
    assert from_start.sparsity_at(0) == 0.5 and from_start.updates_at(0)
    later = schedule(kind="constant", start_epoch=2, **kw)
    assert later.sparsity_at(19) == 0.0 and later.sparsity_at(20) == 0.5 and not later.updates_at(0)


def test_masks_update_every_n_steps_from_the_first_update_and_at_the_end() -> None:
    cubic = schedule(0.8, 4, 10, kind="cubic", start_epoch=1, end_epoch=3, every_steps=7)
    assert [t for t in range(41) if cubic.updates_at(t)] == [10, 17, 24, 30]
    from_start = schedule(0.8, 4, 10, kind="cubic", start_epoch=0, end_epoch=3, every_steps=7)
    assert [t for t in range(41) if from_start.updates_at(t)] == [0, 7, 14, 21, 28, 30]


def test_end_epoch_defaults_to_three_quarters_of_training() -> None:
    assert schedule(0.8, 8, 10, kind="cubic").end_step == 60


def test_drop_fraction_decays_by_cosine_until_the_end() -> None:
    drop = DropSchedule(drop_fraction=0.3, decay="cosine", every_steps=10, end_step=100)
    assert drop.fraction_at(0) == pytest.approx(0.3)
    assert drop.fraction_at(50) == pytest.approx(0.15)
    assert drop.fraction_at(100) == pytest.approx(0.0, abs=1e-12)
    assert drop.fraction_at(25) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop.updates_at(100) and not drop.updates_at(110) and not drop.updates_at(0)


def test_unset_update_interval_means_once_per_epoch_whatever_the_dataset() -> None:
    for steps_per_epoch in (12, 469):
        cubic = schedule(0.9, 5, steps_per_epoch, kind="cubic", start_epoch=1, end_epoch=4, every_steps=None)
        updates = [step for step in range(1, 5 * steps_per_epoch + 1) if cubic.updates_at(step)]
        assert updates == [steps_per_epoch * e for e in (1, 2, 3, 4)]


def test_scores_that_need_a_step_wait_for_it_once_then_keep_the_grid() -> None:
    # Gradient/activation criteria with start_epoch 0: the first update moved to step 1 and the whole grid with it
    # (13, 25 instead of 12, 24), so each epoch's record showed the epoch before's update.
    config = ScheduleConfig(kind="cubic", start_epoch=0, end_epoch=3)
    plain = SparsitySchedule.from_config(config, final=0.7, epochs=3, steps_per_epoch=12)
    waits = SparsitySchedule.from_config(config, final=0.7, epochs=3, steps_per_epoch=12, needs_steps=True)
    assert [s for s in range(40) if plain.updates_at(s)] == [0, 12, 24, 36]
    assert [s for s in range(40) if waits.updates_at(s)] == [1, 12, 24, 36]
    assert [waits.sparsity_at(s) for s in (12, 24, 36)] == [plain.sparsity_at(s) for s in (12, 24, 36)]
    assert waits.sparsity_at(0) == 0.0 and 0 < waits.sparsity_at(1) < plain.sparsity_at(12)
