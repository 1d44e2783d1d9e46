"""Runs that die end failed with advice: non-finite or exploding loss, accuracy fallen to chance."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.engine.guards import MIN_STEPS, CollapseGuard, TrainingDiverged
from worker.engine.training import run_training

LONG = {"steps": 469, "last": False}  # an MNIST epoch at batch 128, not the run's last


def _guard() -> CollapseGuard:
    return CollapseGuard(num_classes=10, hint="lower training.lr")


def test_loss_above_ten_times_its_best_for_two_epochs_is_an_explosion() -> None:
    guard = _guard()
    for epoch, loss in enumerate([1.0, 0.3, 0.1, 4.0], start=1):
        guard.check(epoch, loss, 0.9, pruning_started=True, **LONG)
    with pytest.raises(TrainingDiverged, match=r"exploded after pruning in epochs 4-5 .*lower training\.lr"):
        guard.check(5, 80.0, 0.9, pruning_started=True, **LONG)


def test_one_spike_or_a_small_loss_growing_tenfold_is_not_flagged() -> None:
    guard = _guard()
    for epoch, loss in enumerate([0.5, 9.0, 0.4, 0.001, 0.05, 0.2, 0.01], start=1):
        guard.check(epoch, loss, 0.9, pruning_started=True, **LONG)  # 0.2 is 200x the best but below ln 10


def test_accuracy_at_chance_after_learning_is_a_collapse() -> None:
    guard = _guard()
    guard.check(1, 0.5, 0.9, pruning_started=False, **LONG)
    guard.check(2, 2.2, 0.11, pruning_started=True, **LONG)
    with pytest.raises(TrainingDiverged, match=r"collapsed after pruning at epoch 2 \(test acc 12 % in epoch 3, "
                                               r"chance 10 %, best so far 90 %"):
        guard.check(3, 2.2, 0.12, pruning_started=True, **LONG)


def test_a_network_that_has_not_learnt_yet_is_left_alone() -> None:
    guard = _guard()
    for epoch in range(1, 6):
        guard.check(epoch, 2.25, 0.1, pruning_started=False, **LONG)  # at chance, but no worse than a uniform guess


def test_a_network_still_at_its_initial_loss_is_not_called_diverged() -> None:
    # Seen with tiny learning rates and a handful of samples: the loss stays at an untrained network's,
    # a little above ln 10 = 2.303; "lower training.lr" would be wrong advice for them.
    guard = _guard()
    for epoch in range(1, 6):
        guard.check(epoch, 2.36, 0.06, pruning_started=epoch > 1, **LONG)


def test_a_network_clearly_worse_than_guessing_at_chance_diverged() -> None:
    guard = _guard()
    guard.check(1, 2.6, 0.08, pruning_started=False, **LONG)
    with pytest.raises(TrainingDiverged, match=r"collapsed at epoch 1 \(test acc 9 % in epoch 2, .*best so far 8 %"):
        guard.check(2, 2.6, 0.09, pruning_started=False, **LONG)


def test_a_binary_classifier_at_70_percent_is_not_at_chance() -> None:
    # 1.5/C is 75 % for two classes: a plugin dataset's working binary classifier was failed as "collapsed".
    guard = CollapseGuard(num_classes=2, hint="lower training.lr")
    for epoch in range(1, 6):
        # loss over 1.1 x ln 2 = 0.76, yet well above 50 %
        guard.check(epoch, 0.8, 0.70, pruning_started=epoch > 1, **LONG)
    collapsed = CollapseGuard(num_classes=2, hint="lower training.lr")
    collapsed.check(1, 0.3, 0.95, pruning_started=False, **LONG)
    collapsed.check(2, 0.7, 0.52, pruning_started=True, **LONG)
    with pytest.raises(TrainingDiverged, match="collapsed after pruning"):
        collapsed.check(3, 0.7, 0.51, pruning_started=True, **LONG)


def test_guard_state_survives_a_checkpoint() -> None:
    guard = _guard()
    guard.check(1, 0.5, 0.9, pruning_started=True, **LONG)
    guard.check(2, 2.2, 0.1, pruning_started=True, **LONG)
    resumed = _guard()
    resumed.load_state_dict(guard.state_dict())
    with pytest.raises(TrainingDiverged, match="collapsed"):
        resumed.check(3, 2.2, 0.1, pruning_started=True, **LONG)


def test_a_few_one_step_epochs_at_chance_are_no_verdict_while_the_run_goes_on() -> None:
    # A network cut hard after two steps sat at chance for two one-step epochs and then recovered to 100 %
    # (seen with the parity test's 500-sample data at batch 500): it was failed as "collapsed".
    guard = _guard()
    guard.check(1, 1.5, 0.6, pruning_started=False, steps=1, last=False)
    for epoch in range(2, 2 + MIN_STEPS - 1):
        guard.check(epoch, 2.2, 0.1, pruning_started=True, steps=1, last=False)
    with pytest.raises(TrainingDiverged, match=r"collapsed after pruning at epoch 2 \(test acc 10 % in epoch 51"):
        guard.check(2 + MIN_STEPS - 1, 2.2, 0.1, pruning_started=True, steps=1, last=False)


def test_a_short_run_that_ends_at_chance_is_still_failed() -> None:
    guard = _guard()
    guard.check(1, 1.5, 0.6, pruning_started=False, steps=1, last=False)
    guard.check(2, 2.2, 0.1, pruning_started=True, steps=1, last=False)
    with pytest.raises(TrainingDiverged, match="collapsed after pruning at epoch 2"):
        guard.check(3, 2.2, 0.1, pruning_started=True, steps=1, last=True)


def test_an_explosion_needs_the_step_minimum_too_unless_the_run_ends() -> None:
    guard = _guard()
    guard.check(1, 0.1, 0.9, pruning_started=False, steps=5, last=False)
    guard.check(2, 4.0, 0.5, pruning_started=True, steps=5, last=False)
    guard.check(3, 4.0, 0.5, pruning_started=True, steps=5, last=False)  # 10 steps: not yet
    with pytest.raises(TrainingDiverged, match=r"exploded after pruning in epochs 2-4"):
        guard.check(4, 4.0, 0.5, pruning_started=True, steps=5, last=True)


def test_a_checkpoint_from_before_the_step_minimum_resumes_its_streak() -> None:
    resumed = _guard()
    resumed.load_state_dict({"best_loss": 0.5, "best_acc": 0.9, "exploded_epochs": 0, "chance_epochs": 1})
    with pytest.raises(TrainingDiverged, match="collapsed"):
        resumed.check(3, 2.2, 0.1, pruning_started=True, steps=1, last=False)


def _digits(pruning: dict | None, **training: object) -> dict:
    return {"model": {"name": "lenet300_100"}, "dataset": {"name": "digits", "limit": 512},
            "training": {"epochs": 5, "batch_size": 64, "lr_schedule": "constant", **training}, "pruning": pruning}


def test_pruning_that_kills_the_network_fails_the_run_with_advice(tmp_path: Path) -> None:
    epochs: list[int] = []
    pruning = {"target_sparsity": 0.999, "schedule": {"kind": "one_shot", "start_epoch": 2}}
    with pytest.raises(TrainingDiverged, match=r"collapsed after pruning at epoch 2 .*target_sparsity"):
        # batch 16: 32 steps an epoch, so two epochs at chance pass the step minimum
        run_training(_digits(pruning, lr=0.1, batch_size=16), data_dir=tmp_path,
                     on_epoch=lambda r, m: epochs.append(r.epoch))
    # Epoch 3, the second at chance, is recorded (the message names it, the page shows it); the run still fails.
    assert epochs == [1, 2, 3]


def test_a_diverging_lr_fails_the_run_even_when_the_loss_stays_finite(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"collapsed at epoch \d+ .*lower training\.lr"):
        run_training(_digits(None, lr=3.0, momentum=0.9), data_dir=tmp_path)


def test_a_loss_that_exploded_before_any_pruning_blames_the_learning_rate(tmp_path: Path) -> None:
    # lr 100: loss 2e9 in epoch 1, before the first cut; the message said "after pruning ... or prune more gently".
    epochs: list[int] = []
    pruning = {"target_sparsity": 0.5, "schedule": {"kind": "one_shot", "start_epoch": 1}}
    with pytest.raises(TrainingDiverged) as failure:
        run_training(_digits(pruning, lr=100.0, momentum=0.9, batch_size=16), data_dir=tmp_path,
                     on_epoch=lambda r, m: epochs.append(r.epoch))
    message = str(failure.value)
    assert "after pruning" not in message and "prune more gently" not in message, message
    assert "lower training.lr: the loss was never below a uniform guess's (ln 10 = 2.30)" in message


def test_an_explosion_names_recorded_epochs_and_blames_the_lr_when_the_network_never_learnt() -> None:
    guard = CollapseGuard(num_classes=10, hint="lower training.lr, or prune more gently")
    guard.check(1, 2e9, 0.2, pruning_started=False, **LONG)  # already far above ln 10 before the first cut
    guard.check(2, 7e20, 0.2, pruning_started=True, **LONG)
    with pytest.raises(TrainingDiverged) as failure:
        guard.check(3, 8e20, 0.2, pruning_started=True, **LONG)
    assert str(failure.value).startswith("training loss exploded in epochs 2-3 (train loss 8e+20, best 2e+09): "
                                         "lower training.lr: the loss was never below")


def test_the_advice_names_a_strong_l1_penalty() -> None:
    from prunescope.contract import parse_run_config
    from worker.engine.guards import advice

    config = parse_run_config({"pruning": {"target_sparsity": 0.5, "regularization": {"l1": 10}}})
    assert advice(config).endswith("or a smaller pruning.regularization.l1 (now 10)")
    assert "l1" not in advice(parse_run_config({"pruning": {"target_sparsity": 0.5}}))


def test_prunescope_train_reports_a_runtime_failure_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    # A corrupt image or an allocation failure printed a traceback; the worker reports the same as one line.
    import io
    import sys

    from worker.engine import training

    def corrupt(*_: object, **__: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(training, "run_training", corrupt)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert training.train_main({}, data_dir=tmp_path, device="cpu", out=io.StringIO()) == 1
    assert err.getvalue() == "prunescope train: the run failed: RuntimeError: DefaultCPUAllocator: not enough memory\n"


def test_non_finite_loss_fails_at_once(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    config = make_config(None, training={"epochs": 1, "lr": 100.0, "momentum": 0.9})
    with pytest.raises(TrainingDiverged, match=r"diverged.*lower training\.lr"):
        run_training(config, data_dir=tmp_path)


def test_a_run_that_ends_at_chance_fails_even_if_it_never_left_it() -> None:
    # Sparse from the start at 99.9 %, or a layer emptied by a global ranking at step 0: accuracy at chance from
    # the first record on, loss at a uniform guess's, so no streak rule fired and the run "completed" at 8 %.
    guard = _guard()
    for epoch in range(1, 10):
        guard.check(epoch, 2.30, 0.08, pruning_started=True, steps=12, last=False)
    with pytest.raises(TrainingDiverged, match=r"ended at chance \(test acc 8 % in its last epoch 10, chance 10 %, "
                                               r"best 8 %.*never learnt .*check training\.lr"):
        guard.check(10, 2.30, 0.08, pruning_started=True, steps=12, last=True)
    cut = CollapseGuard(num_classes=10, hint="lower training.lr", emptied_hint="use scope 'layer'")
    with pytest.raises(TrainingDiverged, match=r"pruning removed every weight of fc2\.weight, which cuts the network: "
                                               r"use scope 'layer'"):
        cut.check(1, 2.30, 0.08, pruning_started=True, steps=120, last=True, emptied=["fc2.weight"])


def test_a_run_too_short_to_judge_may_end_at_chance() -> None:
    guard = _guard()  # a smoke test: two epochs of a few steps
    guard.check(1, 2.30, 0.1, pruning_started=True, steps=10, last=False)
    guard.check(2, 2.30, 0.1, pruning_started=True, steps=10, last=True)
    resumed = _guard()  # the step count survives a checkpoint
    resumed.load_state_dict({**guard.state_dict(), "total_steps": MIN_STEPS})
    with pytest.raises(TrainingDiverged, match="ended at chance"):
        resumed.check(3, 2.30, 0.1, pruning_started=True, steps=1, last=True)


def test_a_global_ranking_that_empties_a_layer_at_step_0_fails_naming_it(tmp_path: Path,
                                                                        make_config: Callable[..., dict]) -> None:
    # A reviewer's config: global scope sparse from the start pruned fc2 whole (its initial weights are smaller),
    # SET could never refill it, and the run "completed" at 8 % on digits.
    config = make_config({"target_sparsity": 0.9, "scope": "global", "schedule": {"kind": "constant",
                                                                                  "start_epoch": 0},
                          "recovery": {"kind": "random"}},
                         model={"name": "mlp", "hidden": [128, 64]}, training={"epochs": 8, "batch_size": 32},
                         dataset={"name": "digits"})
    with pytest.raises(TrainingDiverged, match=r"removed every weight of fc2\.weight.*scope 'global' ranks all"):
        run_training(config, data_dir=tmp_path)


def test_a_run_that_fits_its_data_but_ends_at_chance_is_not_told_it_never_learnt() -> None:
    guard = _guard()
    for epoch in range(1, 5):
        guard.check(epoch, 0.4, 0.11, pruning_started=True, **LONG)
    with pytest.raises(TrainingDiverged, match=r"training loss fell to 0\.3 but test accuracy never left chance"):
        guard.check(5, 0.3, 0.11, pruning_started=True, steps=469, last=True)


def test_a_collapse_at_barely_any_sparsity_blames_the_training_settings_not_pruning() -> None:
    # A reviewer's run died at 3 % sparsity and was told to "prune more gently".
    guard = CollapseGuard(num_classes=10, hint="lower training.lr, or prune more gently: a lower target")
    guard.check(1, 0.5, 0.9, pruning_started=True, sparsity=0.01, **LONG)
    guard.check(2, 2.2, 0.11, pruning_started=True, sparsity=0.03, **LONG)
    with pytest.raises(TrainingDiverged, match=r"collapsed at 3 % sparsity at epoch 2 .*: lower training\.lr: pruning "
                                               r"had removed only 3 % of the weights") as caught:
        guard.check(3, 2.2, 0.12, pruning_started=True, sparsity=0.03, **LONG)
    assert "prune more gently" not in str(caught.value)
    pruned = CollapseGuard(num_classes=10, hint="prune more gently")
    pruned.check(1, 0.5, 0.9, pruning_started=True, sparsity=0.5, **LONG)
    pruned.check(2, 2.2, 0.11, pruning_started=True, sparsity=0.9, **LONG)
    with pytest.raises(TrainingDiverged, match=r"collapsed after pruning .*prune more gently"):
        pruned.check(3, 2.2, 0.12, pruning_started=True, sparsity=0.9, **LONG)


def test_a_short_run_ending_at_chance_with_an_emptied_layer_is_failed() -> None:
    # The one_shot preset on digits at 4 epochs (48 steps) emptied fc2 and ended `completed` at 8 %.
    guard = _guard()
    short = {"steps": 12, "last": False}
    guard.check(1, 1.9, 0.25, pruning_started=True, **short)  # not yet learnt: no collapse to call
    guard.check(2, 2.3, 0.08, pruning_started=True, emptied=["fc2.weight"], **short)
    with pytest.raises(TrainingDiverged, match=r"ended at chance .*removed every weight of fc2\.weight"):
        guard.check(3, 2.3, 0.08, pruning_started=True, emptied=["fc2.weight"], steps=12, last=True)
    unharmed = _guard()  # the same short run without an emptied layer gets no verdict
    unharmed.check(1, 2.3, 0.08, pruning_started=True, **short)
    unharmed.check(2, 2.3, 0.08, pruning_started=True, steps=12, last=True)


def test_a_short_run_that_had_learnt_and_ends_at_chance_is_failed() -> None:
    # gmp on 200 digits for 2 epochs (8 steps) at lr 0.2: 40 % after epoch 1, 8 % after the cut; it ended
    # `completed`, and its sweep named it the best run.
    guard = _guard()
    guard.check(1, 1.6, 0.40, pruning_started=False, steps=4, last=False)
    with pytest.raises(TrainingDiverged, match=r"ended at chance \(test acc 8 % .*best 40 %"):
        guard.check(2, 2.3, 0.08, pruning_started=True, steps=4, last=True)
    still_learning = _guard()  # below the learnt level: a short run may be on its way, no verdict
    still_learning.check(1, 2.0, 0.25, pruning_started=False, steps=4, last=False)
    still_learning.check(2, 2.3, 0.12, pruning_started=True, steps=4, last=True)


def test_a_loss_blown_up_under_a_strong_l1_penalty_names_the_penalty() -> None:
    # Epoch 1 at 9.3e13 with l1 = 5: "lower training.lr ... so pruning is not the cause", and l1 was the cause.
    guard = CollapseGuard(num_classes=10, hint="lower training.lr", l1=5.0)
    with pytest.raises(TrainingDiverged, match=r"lower training.lr or pruning.regularization.l1 \(now 5\)"):
        guard.check(1, math.inf, 0.1, pruning_started=False, steps=10, last=False)
    plain = CollapseGuard(num_classes=10, hint="lower training.lr")
    with pytest.raises(TrainingDiverged, match=r"lower training.lr: the loss was never below") as caught:
        plain.check(1, math.inf, 0.1, pruning_started=False, steps=10, last=False)
    assert "l1" not in str(caught.value)
