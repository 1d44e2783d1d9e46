"""Recovery: how pruned weights come back. One class per method behind the pruner's per-step hooks.

- `none`: pruned units stay pruned (they cannot win a place in any later ranking).
- `splice` (DNS) and `feedback` (DPF): the parameters keep the dense weights; masks keep being re-decided
  after the schedule ends, until `recovery.end_epoch`; splice adds DNS's hysteresis around θ.
- `random` (SET) and `gradient` (RigL): drop the weakest share of active weights every `every_steps`
  and regrow as many, at random (fresh values) or where the dense gradient is largest (starting at 0).
A new recovery is a subclass and one `register_recovery` call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch

from prunescope.contract import PruningConfig
from prunescope.contract.extensions import register_extra_name
from prunescope.contract.pruning_rules import dense_recovery_end_problem, drop_interval, drop_phase_problem
from worker.engine.pruning.layer import PrunedLayer
from worker.engine.pruning.schedule import DropSchedule, SparsitySchedule

if TYPE_CHECKING:
    from worker.engine.pruning.pruner import Pruner


class Recovery:
    """Base: masks follow the selection as it is; nothing else happens."""

    #: Parameters hold dense weights; the mask only gates the forward pass (swapped in around it).
    dense_weights: ClassVar[bool] = False
    #: A unit once pruned never returns, so a fixed target's first mask is final.
    freezes_masks: ClassVar[bool] = False

    def __init__(self, config: PruningConfig, layers: list[PrunedLayer], schedule: SparsitySchedule, *,
                 epochs: int, steps_per_epoch: int, generator: torch.Generator) -> None:
        self.config = config
        self.layers = layers
        self.schedule = schedule
        self.generator = generator
        end_epoch = config.recovery.end_epoch
        if end_epoch is not None and end_epoch > epochs:
            raise ValueError(f"pruning.recovery.end_epoch ({end_epoch}) is after the last epoch ({epochs})")
        self.end_step = (epochs if end_epoch is None else end_epoch) * steps_per_epoch

    def rank(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor],
             by_target: bool) -> list[torch.Tensor]:
        """Scores as the selection should see them."""
        return scores

    def threshold_keep(self, scores: torch.Tensor, unit_mask: torch.Tensor,
                       theta: float) -> tuple[torch.Tensor, float | None]:
        """The units a threshold θ keeps."""
        return scores >= theta, theta

    def merge(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """The mask to install, from the selection's and the current one."""
        return new

    def updates_after_schedule(self, step: int) -> bool:
        """Whether masks are re-decided at `step` although the sparsity schedule has ended."""
        return False

    def wants_gradient(self, step: int) -> bool:
        """Whether `observe_gradient` must see the gradient of the step that ends at `step`."""
        return False

    def observe_gradient(self, index: int, grad: torch.Tensor) -> None:
        """Between backward and the optimizer step, when `wants_gradient`."""

    def after_step(self, step: int, pruner: Pruner) -> None:
        """After the optimizer step and any scheduled mask update."""


class NoRecovery(Recovery):
    freezes_masks = True

    def rank(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor],
             by_target: bool) -> list[torch.Tensor]:
        return [torch.where(m, s, torch.full_like(s, float("-inf"))) for s, m in zip(scores, unit_masks, strict=True)]

    def merge(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return new & old


class Feedback(Recovery):
    """DPF (Lin et al. 2020): the gradient at the pruned model updates the dense weights.

    A pruned dense weight feels no loss (the forward pass does not see it), so nothing but weight decay
    pulls it back: under SGD noise (lr 0.1, momentum 0.9) the 98 % of weights that are pruned random-walk,
    the largest of them outgrow the kept ones, re-enter with values no training chose, and the churn
    feeds itself until the dense copy explodes (loss 3.6e9 on LeNet-300-100 at 98.2 %, margin 0.1). So
    whenever masks are re-decided, a pruned weight is first clipped to ±`reentry_level`·θ (θ: its layer's
    cut at the previous update; DPF: θ itself): it still learns below that level and can win its place
    back from a kept weight that has fallen under the cut, entering at the size of the weights around the
    cut, never at a size no training chose. Clipping at each update rather than each step costs nothing
    per step; between updates a pruned weight only drifts, unseen by the forward pass. With magnitude
    scores only (θ is then a weight magnitude).
    """

    dense_weights = True

    def __init__(self, config: PruningConfig, layers: list[PrunedLayer], schedule: SparsitySchedule, *,
                 epochs: int, steps_per_epoch: int, generator: torch.Generator) -> None:
        super().__init__(config, layers, schedule, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         generator=generator)
        if (why := dense_recovery_end_problem(config, epochs)) is not None:  # a tracked run's Pruner lands here
            raise ValueError(why)
        self.bounded = config.criterion == "magnitude" and config.granularity != "neuron"

    @property
    def reentry_level(self) -> float:
        """The multiple of θ a pruned dense weight may reach: the level at which it can return."""
        return 1.0

    def updates_after_schedule(self, step: int) -> bool:
        # A one_shot schedule ends at its cut: splicing starts there, not at the ramp end it has no use for (¾ of
        # the run by default, which left the masks static until then).
        end = self.schedule.start_step if self.schedule.kind == "one_shot" else self.schedule.end_step
        return end < step <= self.end_step and self.schedule.aligned(step)

    def rank(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor],
             by_target: bool) -> list[torch.Tensor]:
        return self.bound_pruned_weights(scores, unit_masks) if self.bounded else scores

    def bound_pruned_weights(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Clip each pruned dense weight to ±reentry_level·θ of its layer, and its |w| score along."""
        out = []
        with torch.no_grad():
            for layer, score, mask in zip(self.layers, scores, unit_masks, strict=True):
                theta = layer.threshold
                if theta is None or not math.isfinite(theta) or theta <= 0 or bool(mask.all()):
                    out.append(score)
                    continue
                limit = self.reentry_level * theta
                weight = layer.weight.data
                weight.copy_(torch.where(mask, weight, weight.clamp(-limit, limit)))
                out.append(torch.where(mask, score, score.clamp(max=limit)))
        return out


class Splice(Feedback):
    """DNS (Guo et al. 2016): a pruned weight returns above (1+margin)·θ, an active one leaves below (1-margin)·θ.

    A pruned dense weight stops at the splice-in level (1+margin)·θ: there it ranks with a kept weight at the
    splice-out level (1-margin)·θ, so it returns only in place of one that DNS would drop anyway. On the
    reviewers' run (LeNet-300-100 to 98.2 %, margin 0.1, SGD 0.1 / momentum 0.9, 40 epochs): no clip, the
    loss reaches 3.6e9 and the network dies at 11 %; clipped here at each update, 2.02 % error (5 seeds).
    Clipping every step instead (seed 0): here 1.80 %; at θ 1.94 % (splicing all but stops); at the top of
    the band (1+m)/(1-m)·θ, thousands of swaps per epoch and 4.5 %.
    """

    @property
    def reentry_level(self) -> float:
        return 1 + self.config.recovery.margin

    def rank(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor],
             by_target: bool) -> list[torch.Tensor]:
        scores = super().rank(scores, unit_masks, by_target)
        if not by_target:
            return scores
        # Ranking s/(1-m) for active and s/(1+m) for inactive units and keeping the top k is the hysteresis
        # rule with θ = the lowest kept ranked value, and hits the target count exactly.
        margin = self.config.recovery.margin
        return [torch.where(um, s / (1 - margin), s / (1 + margin)) for s, um in zip(scores, unit_masks, strict=True)]

    def threshold_keep(self, scores: torch.Tensor, unit_mask: torch.Tensor,
                       theta: float) -> tuple[torch.Tensor, float | None]:
        margin = self.config.recovery.margin
        # ≥ at the splice-in level: a pruned weight clipped there (see Feedback) is one DNS would bring back.
        keep = (scores >= (1 + margin) * theta) | (unit_mask & (scores >= (1 - margin) * theta))
        return keep, theta


class RandomRegrowth(Recovery):
    """SET (Mocanu et al. 2018): drop the smallest share, regrow as many elsewhere at random, fresh values.

    The schedule's own updates prune among the active weights only, as under `none`: a weight comes back by
    drop-and-grow alone. (Re-deciding over all weights, a `random` criterion re-drew the whole mask at each
    update and kept mostly pruned zeros: the network sat at chance; movement and gradient scores kept some.)
    """

    rank = NoRecovery.rank
    merge = NoRecovery.merge

    def __init__(self, config: PruningConfig, layers: list[PrunedLayer], schedule: SparsitySchedule, *,
                 epochs: int, steps_per_epoch: int, generator: torch.Generator) -> None:
        super().__init__(config, layers, schedule, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         generator=generator)
        rec = config.recovery
        end_step = schedule.end_step if rec.end_epoch is None else rec.end_epoch * steps_per_epoch
        # Unset: RigL's 100 steps, but at least once an epoch: on a small dataset (12 steps an epoch) a fixed 100
        # often came after the last drop-and-grow step, and the run trained static sparse under the name RigL.
        self.drop = DropSchedule(drop_fraction=rec.drop_fraction, decay=rec.decay,
                                 every_steps=drop_interval(config, steps_per_epoch), end_step=end_step)
        if (why := drop_phase_problem(config, epochs, steps_per_epoch)) is not None:  # the API checks known datasets
            raise ValueError(why)

    def grow_scores(self, index: int, after_drop: torch.Tensor,
                    inactive_before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the positions to regrow, and which positions may regrow."""
        return torch.rand(after_drop.shape, generator=self.generator).to(after_drop.device), inactive_before

    def init_regrown(self, layer: PrunedLayer, grown: torch.Tensor) -> None:
        # SET gives new connections fresh random values: PyTorch's default Linear/Conv init range, so a
        # regrown weight is not the first to be dropped again.
        bound = 1.0 / math.sqrt(layer.row_size)
        values = (torch.rand(grown.numel(), generator=self.generator) * 2 - 1) * bound
        with torch.no_grad():
            # `grown` indexes the mask flattened in logical order; unravelled, it fits any memory layout
            # (a channels_last conv weight cannot be viewed flat).
            position = torch.unravel_index(grown, tuple(layer.weight.shape))
            layer.weight.data[position] = values.to(layer.weight.device, layer.weight.dtype)

    def can_move(self, index: int) -> bool:
        """Whether drop-and-grow may change layer `index` at this update."""
        return True

    def drop_due(self, step: int) -> bool:
        """Every `every_steps` counted from the schedule's first update, until the recovery's end.

        Sparse from the start that is every k-th step; under a gradual ramp it puts drop-and-grow on the
        steps the ramp updates masks, so a regrown weight gets a whole interval to grow before the next
        magnitude update judges it (off the grid, with a ramp from epoch 1 of 938 steps and k = 100, it
        got 38 steps).
        """
        since = step - self.schedule.origin
        return step > self.schedule.start_step and step <= self.drop.end_step and since % self.drop.every_steps == 0

    def after_step(self, step: int, pruner: Pruner) -> None:
        if self.drop_due(step):
            self.drop_and_grow(step, pruner)

    def drop_and_grow(self, step: int, pruner: Pruner) -> None:
        fraction = self.drop.fraction_at(step)
        for index, layer in enumerate(self.layers):
            if not self.can_move(index):
                continue
            mask = layer.mask.reshape(-1)
            active = int(mask.sum())
            inactive_before = ~mask
            n_move = min(round(fraction * active), int(inactive_before.sum()))
            if n_move <= 0:
                continue
            scores = pruner.criterion.weight_scores(index).reshape(-1)
            drop_rank = torch.where(mask, scores, torch.full_like(scores, float("inf")))
            dropped = torch.topk(drop_rank, n_move, largest=False).indices
            after_drop = mask.clone()
            after_drop[dropped] = False
            grow_score, candidates = self.grow_scores(index, after_drop, inactive_before)
            grow_score = torch.where(candidates, grow_score, torch.full_like(grow_score, float("-inf")))
            grown = torch.topk(grow_score, n_move).indices
            new = after_drop.clone()
            new[grown] = True
            layer.threshold = float(scores[dropped].max())
            pruner.commit(layer, new.view_as(layer.mask))
            self.init_regrown(layer, grown)


class GradientRegrowth(RandomRegrowth):
    """RigL (Evci et al. 2020): regrow where the dense gradient is largest; new weights start at 0."""

    def __init__(self, config: PruningConfig, layers: list[PrunedLayer], schedule: SparsitySchedule, *,
                 epochs: int, steps_per_epoch: int, generator: torch.Generator) -> None:
        super().__init__(config, layers, schedule, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         generator=generator)
        self.grown_grad: list[torch.Tensor | None] = [None] * len(layers)

    def wants_gradient(self, step: int) -> bool:
        return self.drop_due(step)

    def observe_gradient(self, index: int, grad: torch.Tensor) -> None:
        self.grown_grad[index] = grad.abs()  # the dense gradient, before it is masked

    def can_move(self, index: int) -> bool:
        # A layer that had no gradient at this step (frozen, or on a branch this batch did not take) keeps its
        # mask until an update where it has one: regrowing it would be a guess, not RigL.
        return self.grown_grad[index] is not None

    def drop_and_grow(self, step: int, pruner: Pruner) -> None:
        try:
            super().drop_and_grow(step, pruner)
        finally:
            self.grown_grad = [None] * len(self.layers)  # one step's gradients: never reused at a later update

    def grow_scores(self, index: int, after_drop: torch.Tensor,
                    inactive_before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad = self.grown_grad[index]
        assert grad is not None, f"RigL needs the dense gradient of {self.layers[index].name} at this step"
        return grad.reshape(-1).clone(), ~after_drop  # RigL may re-pick a just-dropped weight

    def init_regrown(self, layer: PrunedLayer, grown: torch.Tensor) -> None:
        """Regrown weights were zero already (the commit zeroed what was masked): they start at 0."""


#: `pruning.recovery.kind` → class. Add one with `register_recovery`.
RECOVERIES: dict[str, type[Recovery]] = {
    "none": NoRecovery, "splice": Splice, "feedback": Feedback, "random": RandomRegrowth,
    "gradient": GradientRegrowth,
}


def register_recovery(name: str, cls: type[Recovery]) -> type[Recovery]:
    """Make `name` a recovery kind: the engine builds `cls`, and this process's run config accepts it."""
    RECOVERIES[name] = cls
    register_extra_name("recovery", name)
    return cls
