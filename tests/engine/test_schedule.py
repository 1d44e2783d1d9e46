"""Sparsity schedules: Zhu & Gupta's cubic formula, when masks update, drop-fraction decay."""

from __future__ import annotations

import math

import pytest

from worker.engine.pruning.schedule import DropSchedule, SparsitySchedule


def test_cubic_schedule_matches_zhu_gupta_formula() -> None:
    schedule = SparsitySchedule.from_config({"kind": "cubic", "start_epoch": 2, "end_epoch": 6, "every_steps": 5},
                                            final=0.9, epochs=8, steps_per_epoch=10)
    t0, n_dt = 10, 50  # begins with epoch 2, reaches the target at the end of epoch 6
    for t in range(0, 80):
        if t < t0:
            expected = 0.0
        elif t >= t0 + n_dt:
            expected = 0.9
        else:
            expected = 0.9 + (0.0 - 0.9) * (1 - (t - t0) / n_dt) ** 3
        assert schedule.sparsity_at(t) == pytest.approx(expected, abs=1e-12)


def test_linear_one_shot_and_constant_schedules() -> None:
    kw = {"final": 0.5, "epochs": 4, "steps_per_epoch": 10}
    linear = SparsitySchedule.from_config({"kind": "linear", "start_epoch": 1, "end_epoch": 2}, **kw)
    assert linear.sparsity_at(10) == pytest.approx(0.25)
    one_shot = SparsitySchedule.from_config({"kind": "one_shot", "start_epoch": 3}, **kw)
    assert one_shot.sparsity_at(19) == 0.0 and one_shot.sparsity_at(20) == 0.5
    assert [t for t in range(41) if one_shot.updates_at(t)] == [20]
    constant = SparsitySchedule.from_config({"kind": "constant", "start_epoch": 3}, **kw)
    assert constant.sparsity_at(0) == 0.5 and constant.updates_at(0)


def test_masks_update_every_n_steps_and_at_the_end_of_the_schedule() -> None:
    schedule = SparsitySchedule.from_config({"kind": "cubic", "start_epoch": 1, "end_epoch": 3, "every_steps": 7},
                                            final=0.8, epochs=4, steps_per_epoch=10)
    assert [t for t in range(41) if schedule.updates_at(t)] == [0, 7, 14, 21, 28, 30]


def test_end_epoch_defaults_to_three_quarters_of_training() -> None:
    schedule = SparsitySchedule.from_config({"kind": "cubic"}, final=0.8, epochs=8, steps_per_epoch=10)
    assert schedule.end_step == 60


def test_drop_fraction_decays_by_cosine_until_the_end() -> None:
    drop = DropSchedule(drop_fraction=0.3, decay="cosine", every_steps=10, end_step=100)
    assert drop.fraction_at(0) == pytest.approx(0.3)
    assert drop.fraction_at(50) == pytest.approx(0.15)
    assert drop.fraction_at(100) == pytest.approx(0.0, abs=1e-12)
    assert drop.fraction_at(25) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop.updates_at(100) and not drop.updates_at(110) and not drop.updates_at(0)


def test_unset_update_interval_means_once_per_epoch_whatever_the_dataset() -> None:
    for steps_per_epoch in (12, 469):
        schedule = SparsitySchedule.from_config({"kind": "cubic", "start_epoch": 1, "end_epoch": 4,
                                                 "every_steps": None}, final=0.9, epochs=5,
                                                steps_per_epoch=steps_per_epoch)
        updates = [step for step in range(1, 5 * steps_per_epoch + 1) if schedule.updates_at(step)]
        assert updates == [steps_per_epoch * e for e in (1, 2, 3, 4)]
