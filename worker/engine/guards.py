"""Catching runs that die: a non-finite or exploding training loss, or test accuracy stuck at chance.

A dead run must end `failed` with advice, never `completed` with 11 % accuracy. The rules, checked once
per epoch:
- the training loss is NaN/inf (at once);
- the training loss is above both 10x the best epoch loss so far and the loss of a uniform guess
  (ln C for C classes) for `PATIENCE` consecutive epochs that hold at least `MIN_STEPS` optimizer steps
  together: a run that merely gets a little worse after a pruning step is not flagged, one that loses what it
  learnt is;
- the test accuracy is at chance (≤ 1.5/C, and at most 1/C + 10 points) for `PATIENCE` consecutive epochs
  (and `MIN_STEPS` steps) after it had been well above it (≥ twice that, or halfway from it to 1 when C is
  small), or while the training loss is more than 10 % above a uniform guess's ln C: a network that learnt and
  fell to chance died, one that does clearly worse than guessing diverged. A network at chance with a loss
  near ln C may just not have learnt yet (a tiny learning rate, a handful of samples: an untrained network's
  loss is ln C or a little above), and is left alone.

- at the run's last epoch, after at least `MIN_STEPS` steps in all (or any number, once it had learnt), test
  accuracy at chance whatever came before:
  a run that never left chance (sparse from the start at 99.9 %, a layer emptied by a global ranking at step 0)
  is no result either, and must not end `completed`. When a pruned layer has no weight left, the message says so.

The step minimum matters for runs of a few steps an epoch (small data, large batches): a network cut hard after
two steps of training can sit at chance for a few steps and then recover, so two one-step epochs are no verdict
while the run has steps left; at its last epoch they are (it ends where it is). With MNIST's 469 steps an
epoch, the rule is two epochs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prunescope.contract import PruningConfig, RunConfig

EXPLOSION_FACTOR = 10.0
PATIENCE = 2
MIN_STEPS = 50  # optimizer steps a bad streak must also last: a verdict after 2 one-step epochs is premature
CHANCE_FACTOR = 1.5
NEAR_UNIFORM = 0.9  # x ln C: a best training loss above this never learnt anything
DIVERGED_FACTOR = 1.1  # x ln C: an untrained network's loss, seen 2.31-2.36 for C = 10, is not divergence


class TrainingDiverged(ValueError):
    """The run cannot produce a useful model any more; the message says what to change."""


def emptied_advice(config: RunConfig | PruningConfig) -> str:
    """What to change when pruning left a layer with no weight (a run config, or its pruning block)."""
    p = config.pruning if isinstance(config, RunConfig) else config
    if p is not None and p.scope == "global":
        return ("scope 'global' ranks all layers together, and a layer whose weights start smaller (more inputs) can "
                "lose all of them; use scope 'layer' (or distribution 'erk'), a lower target, or a later "
                "schedule.start_epoch so that weights are ranked after some training")
    return "a lower pruning.target_sparsity or threshold"


def emptied_message(emptied: Sequence[str], hint: str) -> str:
    """Which pruned layers have no weight left, and `hint` (`emptied_advice`)."""
    shown = ", ".join(emptied[:5]) + (f" and {len(emptied) - 5} more" if len(emptied) > 5 else "")
    return f"pruning removed every weight of {shown}, which cuts the network: {hint}"


def warn_emptied(layer: str, pruning: PruningConfig, warned: set[str]) -> None:
    """A Pruner in the user's own loop says so (once per layer in `warned`) when an update empties a layer: that
    loop has no guard to end the run, which would otherwise train at chance with nothing said."""
    if layer not in warned:
        warned.add(layer)
        warnings.warn(f"Pruner: {emptied_message([layer], emptied_advice(pruning))}", stacklevel=4)


def advice(config: RunConfig) -> str:
    """What a user can change, for the run's kind of pruning."""
    p = config.pruning
    if p is None:
        return "lower training.lr"
    l1 = f" or a smaller pruning.regularization.l1 (now {p.regularization.l1:g})" if p.regularization.l1 > 0 else ""
    if p.dense_weights:
        return ("lower training.lr, or damp mask changes: a larger pruning.recovery.margin or an earlier "
                f"pruning.recovery.end_epoch{l1}")
    return ("lower training.lr, or prune more gently: a lower pruning.target_sparsity or a later "
            f"schedule.end_epoch{l1}")


BARELY_PRUNED = 0.1  # below this sparsity a collapse is blamed on the training settings, not on pruning


@dataclass
class CollapseGuard:
    """Watches each epoch's losses and accuracy; raises `TrainingDiverged` when the run has died."""

    num_classes: int
    hint: str
    emptied_hint: str = "a lower pruning.target_sparsity or threshold"
    l1: float = 0.0  # the run's pruning.regularization.l1: a strong penalty blows the loss up as a high lr does
    best_loss: float = math.inf
    best_acc: float = 0.0
    exploded_epochs: int = 0
    chance_epochs: int = 0
    exploded_steps: int = 0
    chance_steps: int = 0
    total_steps: int = 0

    @property
    def chance_level(self) -> float:
        # 1.5/C, but never more than 10 points above chance: for two classes 1.5/C is 75 %, a working classifier.
        return min(CHANCE_FACTOR / self.num_classes, 1 / self.num_classes + 0.1)

    @property
    def learnt_level(self) -> float:
        return min(2 * self.chance_level, (1 + self.chance_level) / 2)

    def check(self, epoch: int, train_loss: float, test_acc: float, pruning_started: bool, *, steps: int,
              last: bool, emptied: Sequence[str] = (), sparsity: float | None = None) -> None:
        """One epoch's verdict; `steps` is how many optimizer steps the epoch took, `last` whether it ends the run,
        `emptied` the pruned layers with no weight left, `sparsity` the share of weights pruned by then."""
        self.check_finite(epoch, train_loss)
        uniform_loss = math.log(self.num_classes)
        never_learnt = self.never_learnt
        self.total_steps += steps
        when = "after pruning " if pruning_started and not never_learnt else ""
        hint = self.lr_hint if never_learnt else self.hint
        if when and sparsity is not None and sparsity < BARELY_PRUNED:
            # "Prune more gently" misled at 3 % sparsity: a run this lightly pruned died of its training settings.
            when = f"at {100 * sparsity:.0f} % sparsity "
            hint = (f"lower training.lr: pruning had removed only {100 * sparsity:.0f} % of the weights, so it is an "
                    "unlikely cause")
        if emptied:
            hint = emptied_message(emptied, self.emptied_hint)
        exploded = train_loss > max(EXPLOSION_FACTOR * self.best_loss, uniform_loss)
        self.exploded_epochs = self.exploded_epochs + 1 if exploded else 0
        self.exploded_steps = self.exploded_steps + steps if exploded else 0
        at_chance = test_acc <= self.chance_level and (
            self.best_acc >= self.learnt_level or train_loss > DIVERGED_FACTOR * uniform_loss)
        self.chance_epochs = self.chance_epochs + 1 if at_chance else 0
        self.chance_steps = self.chance_steps + steps if at_chance else 0
        if self.exploded_epochs >= PATIENCE and (self.exploded_steps >= MIN_STEPS or last):
            raise TrainingDiverged(
                f"training loss exploded {when}in epochs {epoch - self.exploded_epochs + 1}-{epoch} "
                f"(train loss {train_loss:.3g}, best {self.best_loss:.3g}): {hint}")
        if self.chance_epochs >= PATIENCE and (self.chance_steps >= MIN_STEPS or last):
            raise TrainingDiverged(
                f"training collapsed {when}at epoch {epoch - self.chance_epochs + 1} "
                f"(test acc {100 * test_acc:.0f} % in epoch {epoch}, "
                f"chance {100 / self.num_classes:.0f} %, best so far {100 * self.best_acc:.0f} %, "
                f"train loss {train_loss:.3g}): {hint}")
        # A short run may still be on its way when it ends (no verdict under MIN_STEPS), unless a layer has no weight
        # left (that network cannot recover, however long it trains) or it had learnt and fell back: a run of 8 steps
        # at 40 % after its first epoch and 8 % after the cut that ended it is no result (it ended `completed`).
        learnt = self.best_acc >= self.learnt_level
        if last and (self.total_steps >= MIN_STEPS or emptied or learnt) and test_acc <= self.chance_level:
            best_loss = min(self.best_loss, train_loss)
            if self.best_acc < self.learnt_level and not emptied:  # test accuracy never left chance
                if best_loss > NEAR_UNIFORM * uniform_loss:
                    hint = (f"the network never learnt (its training loss stayed near a uniform guess's ln "
                            f"{self.num_classes} = {uniform_loss:.2f}): check training.lr (too high diverges, too "
                            "low never moves) and, for a run sparse from its start, a lower pruning.target_sparsity")
                else:
                    hint = (f"its training loss fell to {best_loss:.3g} but test accuracy never left chance: the "
                            "model fits its training data without generalising (too few samples, or test labels "
                            "unlike the training labels)")
            raise TrainingDiverged(
                f"the run ended at chance (test acc {100 * test_acc:.0f} % in its last epoch {epoch}, chance "
                f"{100 / self.num_classes:.0f} %, best {100 * max(self.best_acc, test_acc):.0f} %, train loss "
                f"{train_loss:.3g}): {hint}")
        self.best_loss = min(self.best_loss, train_loss)
        self.best_acc = max(self.best_acc, test_acc)

    @property
    def never_learnt(self) -> bool:
        """The loss never fell below a uniform guess's and accuracy never left chance: whatever goes wrong now, the
        learning rate is the cause, whether or not pruning has started (lr 100 blows up in epoch 1, before a cut)."""
        return self.best_loss > math.log(self.num_classes) and self.best_acc < self.learnt_level

    @property
    def lr_hint(self) -> str:
        # With an L1 penalty the message said "lower training.lr ... so pruning is not the cause" for l1 = 5, the cause.
        what = (f"lower training.lr or pruning.regularization.l1 (now {self.l1:g})" if self.l1 > 0
                else "lower training.lr")
        return (f"{what}: the loss was never below a uniform guess's (ln {self.num_classes} = "
                f"{math.log(self.num_classes):.2f}), so the pruning schedule is not the cause")

    def check_finite(self, epoch: int, train_loss: float) -> None:
        """A NaN/inf training loss fails the run at once (before its epoch is recorded: records hold finite values)."""
        if not math.isfinite(train_loss):
            hint = self.lr_hint if self.never_learnt else self.hint
            raise TrainingDiverged(f"training diverged in epoch {epoch} (train loss {train_loss}): {hint}")

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_acc": self.best_acc, "exploded_epochs": self.exploded_epochs,
                "chance_epochs": self.chance_epochs, "exploded_steps": self.exploded_steps,
                "chance_steps": self.chance_steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("best_loss", "best_acc"):
            setattr(self, key, float(state[key]))
        for key in ("exploded_epochs", "chance_epochs"):
            setattr(self, key, int(state[key]))
        self.total_steps = int(state.get("total_steps", MIN_STEPS))  # older checkpoints: a run long enough
        for key in ("exploded_steps", "chance_steps"):
            # a checkpoint from before the step minimum: its streak counts as long enough, as it did then
            setattr(self, key, int(state.get(key, MIN_STEPS if state[key.replace("steps", "epochs")] else 0)))
