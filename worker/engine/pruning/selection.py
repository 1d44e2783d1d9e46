"""Selection: from scores to new keep-masks. N:M groups, a threshold θ, or top-k per layer (uniform, ERK)
or global, over weights or whole neurons. One class per rule, chosen by `selection_for(config)`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch

from prunescope.contract import PruningConfig, StdScaleThreshold
from worker.engine.pruning.layer import PrunedLayer
from worker.engine.pruning.ranking import (
    erk_densities,
    keep_top,
    keep_top_global,
    keep_units_by_weight,
    n_m_mask,
    prune_count,
)

if TYPE_CHECKING:
    from worker.engine.pruning.recovery import Recovery

Choice = tuple[torch.Tensor, float | None]  # a unit keep-mask and the score cut (threshold) it used


class Selection(ABC):
    """Base: turns one unit score tensor per layer into unit keep-masks at a target sparsity."""

    #: Whether the rule aims at a target sparsity (recoveries may re-rank scores for it).
    by_target: ClassVar[bool] = True

    def __init__(self, config: PruningConfig, layers: list[PrunedLayer]) -> None:
        self.config = config
        self.layers = layers
        self.neuron = config.granularity == "neuron"
        self._densities: tuple[tuple[bool, ...], list[float]] | None = None

    @property
    def densities(self) -> list[float]:
        """Each layer's density at the target (uniform, or ERK). Under `neuron` the output layer stays dense, so
        ERK shares the budget among the others (which layer that is settles in the first forward)."""
        fixed = tuple(self.neuron and not layer.row_pruning for layer in self.layers)
        if self._densities is None or self._densities[0] != fixed:
            target = self.config.target_sparsity or 0.0
            shapes = [tuple(layer.weight.shape) for layer in self.layers]
            dense = {i for i, is_fixed in enumerate(fixed) if is_fixed}
            self._densities = fixed, (erk_densities(shapes, 1 - target, dense=dense)
                                      if self.config.distribution == "erk" else [1 - target] * len(self.layers))
        return self._densities[1]

    @abstractmethod
    def select(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor], sparsity: float,
               recovery: Recovery) -> list[Choice]:
        """Each layer's new unit mask and the score cut that made it, at overall `sparsity`."""

    def layer_sparsity(self, index: int, sparsity: float) -> float:
        """Layer `index`'s share of the overall `sparsity` (its ERK/uniform density scaled to the schedule)."""
        target = self.config.target_sparsity
        return sparsity * (1 - self.densities[index]) / target if target else 0.0


class NMSelection(Selection):
    """Keep the n largest of every m consecutive input weights (the sparsity is fixed at 1 - n/m)."""

    by_target = False

    def select(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor], sparsity: float,
               recovery: Recovery) -> list[Choice]:
        assert self.config.n_m is not None
        n, m = self.config.n_m
        return [(n_m_mask(s, n, m), None) for s in scores]


class ThresholdSelection(Selection):
    """Keep scores ≥ θ: an absolute θ (the seed's rule) or Han et al.'s q·std of each layer's weights."""

    by_target = False

    def theta(self, layer: PrunedLayer) -> float:
        threshold = self.config.threshold
        if isinstance(threshold, StdScaleThreshold):
            # θ = q·std of the layer's weights, pruned zeros included, so that re-applying the rule
            # converges instead of pruning ever more.
            return threshold.std_scale * float(layer.weight.data.float().std())
        assert threshold is not None
        return float(threshold)

    def select(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor], sparsity: float,
               recovery: Recovery) -> list[Choice]:
        out: list[Choice] = []
        for layer, s, um in zip(self.layers, scores, unit_masks, strict=True):
            if self.neuron and not layer.row_pruning:
                out.append((torch.ones_like(um), None))
                continue
            keep, theta = recovery.threshold_keep(s, um, self.theta(layer))
            if self.neuron and not bool(keep.any()):
                # At least one neuron a layer, as under a target: with none the whole network is dead.
                keep = torch.zeros_like(keep)
                keep[int(torch.argmax(s))] = True
            out.append((keep, theta))
        return out


class LayerTopK(Selection):
    """Each layer keeps its top scores at its own density (uniform, or ERK)."""

    def select(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor], sparsity: float,
               recovery: Recovery) -> list[Choice]:
        return [keep_top(s, s.numel() - prune_count(self.layer_sparsity(i, sparsity), s.numel()))
                for i, s in enumerate(scores)]


class GlobalTopK(Selection):
    """One ranking and one threshold over all layers."""

    def select(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor], sparsity: float,
               recovery: Recovery) -> list[Choice]:
        total = sum(s.numel() for s in scores)
        masks, cut = keep_top_global(scores, total - prune_count(sparsity, total))
        return [(mask, cut) for mask in masks]


class NeuronLayerTopK(Selection):
    """Each hidden layer keeps its top rows (neurons/filters); the output layer keeps its classes."""

    def select(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor], sparsity: float,
               recovery: Recovery) -> list[Choice]:
        out: list[Choice] = []
        for i, (layer, s) in enumerate(zip(self.layers, scores, strict=True)):
            if not layer.row_pruning:
                out.append((torch.ones_like(s, dtype=torch.bool), None))
                continue
            # Whole rows, rounded down: the layer never passes its share, so the run never passes its target. At
            # least one neuron a layer: with none it passes nothing on and the whole network is dead.
            pruned = math.floor(self.layer_sparsity(i, sparsity) * layer.rows + 1e-9)
            out.append(keep_top(s, max(1, layer.rows - pruned)))
        return out


class NeuronGlobalTopK(Selection):
    """Rows of all hidden layers in one ranking, pruned while the pruned weights fit the budget."""

    def select(self, scores: list[torch.Tensor], unit_masks: list[torch.Tensor], sparsity: float,
               recovery: Recovery) -> list[Choice]:
        index = [i for i, layer in enumerate(self.layers) if layer.row_pruning]
        total = sum(layer.weight.numel() for layer in self.layers)
        kept = keep_units_by_weight([scores[i] for i in index], [self.layers[i].row_size for i in index],
                                    prune_count(sparsity, total))
        out: list[Choice] = [(torch.ones_like(s, dtype=torch.bool), None) for s in scores]
        for i, keep in zip(index, kept, strict=True):
            alive = scores[i][keep]
            out[i] = (keep, float(alive.min()) if alive.numel() else None)
        return out


#: Selection rule name → class; `selection_for` names the rule a pruning block asks for.
SELECTIONS: dict[str, type[Selection]] = {
    "n:m": NMSelection, "threshold": ThresholdSelection, "layer": LayerTopK, "global": GlobalTopK,
    "neuron/layer": NeuronLayerTopK, "neuron/global": NeuronGlobalTopK,
}


def selection_for(config: PruningConfig) -> str:
    if config.granularity == "n:m":
        return "n:m"
    if config.target_sparsity is None:
        return "threshold"
    return f"neuron/{config.scope}" if config.granularity == "neuron" else config.scope
