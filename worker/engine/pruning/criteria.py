"""Pruning criteria: how important each weight (or neuron) is. Higher score = more worth keeping."""

from __future__ import annotations

import torch

CRITERIA = ("magnitude", "gradient", "movement", "activation", "random")
# Criteria whose scores are accumulated from gradients between mask updates.
GRADIENT_CRITERIA = ("gradient", "movement")
ACTIVATION_STATS = ("mean_abs", "apoz")


def accumulate_gradient_score(criterion: str, acc: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> None:
    """Add one step's contribution: |w·g| (first-order Taylor) or -w·g (movement, Sanh et al. 2020)."""
    if criterion == "gradient":
        acc.add_((weight * grad).abs_())
    else:
        acc.addcmul_(weight, grad, value=-1.0)


def activation_score(stat: str, sums: torch.Tensor, zeros: torch.Tensor, count: int) -> torch.Tensor:
    """Per-neuron score from post-ReLU activations: mean |a|, or 1 - APoZ (Hu et al. 2016)."""
    if count == 0:
        raise ValueError("criterion 'activation' has no activations yet: prune after at least one training step")
    if stat == "apoz":
        return 1.0 - zeros / count
    return sums / count


def row_score(scores: torch.Tensor, how: str) -> torch.Tensor:
    """Collapse weight scores to one score per output neuron/filter (row)."""
    rows = scores.reshape(scores.shape[0], -1)
    return rows.mean(dim=1) if how == "mean" else rows.sum(dim=1)
