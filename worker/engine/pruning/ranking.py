"""Turning scores into boolean keep-masks: top-k per layer or global, thresholds, N:M groups, ERK."""

from __future__ import annotations

import math

import torch


def prune_count(amount: float, size: int) -> int:
    """How many of `size` units `amount` prunes; rounds like `torch.nn.utils.prune` does."""
    return round(amount * size)


def keep_top(scores: torch.Tensor, n_keep: int) -> tuple[torch.Tensor, float | None]:
    """Keep the `n_keep` highest scores; returns the mask and the lowest kept score (the threshold)."""
    flat = scores.reshape(-1)
    n_keep = max(0, min(n_keep, flat.numel()))
    if n_keep == 0:
        return torch.zeros_like(scores, dtype=torch.bool), None
    n_prune = flat.numel() - n_keep
    if n_prune <= n_keep:
        # topk is several times faster for small k: find the few to prune rather than the many to keep.
        mask = torch.ones(flat.numel(), dtype=torch.bool, device=scores.device)
        if n_prune > 0:
            mask[torch.topk(flat, n_prune, largest=False, sorted=False).indices] = False
        threshold = float(torch.where(mask, flat, torch.full_like(flat, float("inf"))).min())
        return mask.view_as(scores), threshold
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=scores.device)
    values, index = torch.topk(flat, n_keep, largest=True, sorted=False)
    mask[index] = True
    return mask.view_as(scores), float(values.min())


def keep_top_global(scores: list[torch.Tensor], n_keep: int) -> tuple[list[torch.Tensor], float | None]:
    """`keep_top` over several tensors at once (global scope): one threshold for all."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    mask, threshold = keep_top(flat, n_keep)
    out, offset = [], 0
    for s in scores:
        out.append(mask[offset: offset + s.numel()].view_as(s))
        offset += s.numel()
    return out, threshold


def keep_units_by_weight(scores: list[torch.Tensor], sizes: list[int], n_prune_weights: int) -> list[torch.Tensor]:
    """Prune whole units (rows) in ascending score order while the pruned weights stay ≤ the budget; each layer
    keeps its best unit (a hidden layer with no neuron left passes nothing on: the network is dead)."""
    flat = torch.cat(scores)
    unit_size = torch.cat([torch.full((s.numel(),), size, dtype=torch.long) for s, size in zip(scores, sizes,
                                                                                              strict=True)])
    offsets = torch.tensor([0, *[s.numel() for s in scores]]).cumsum(0)[:-1]
    best = torch.stack([s.reshape(-1).argmax().cpu() for s in scores]) + offsets
    flat = flat.cpu().clone()
    flat[best] = math.inf  # ranked last,
    unit_size[best] = n_prune_weights + 1  # and never within the budget
    order = torch.argsort(flat.cpu(), stable=True)
    pruned_sizes = torch.cumsum(unit_size[order], 0)
    n_units = int((pruned_sizes <= n_prune_weights).sum())
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[order[:n_units]] = False
    out, offset = [], 0
    for s in scores:
        out.append(keep[offset: offset + s.numel()].to(s.device))
        offset += s.numel()
    return out


def keep_with_hysteresis(scores: torch.Tensor, mask: torch.Tensor, n_keep: int | None, threshold: float | None,
                         margin: float) -> tuple[torch.Tensor, float | None]:
    """DNS splicing: an inactive unit returns above (1+margin)·θ, an active one leaves below (1-margin)·θ.

    With `n_keep` θ is chosen so that exactly `n_keep` units stay active; otherwise `threshold` is θ.
    """
    if n_keep is not None:
        # Ranking s/(1-m) for active and s/(1+m) for inactive units and keeping the top n_keep is the
        # hysteresis rule with θ = the lowest kept ranked value, and hits the target count exactly.
        ranked = torch.where(mask, scores / (1 - margin), scores / (1 + margin))
        return keep_top(ranked, n_keep)
    if threshold is None:
        raise ValueError("splice needs either a target sparsity or a threshold")
    keep = (scores > (1 + margin) * threshold) | (mask & (scores >= (1 - margin) * threshold))
    return keep, threshold


def n_m_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the `n` highest of every `m` consecutive input weights of each output row (N:M sparsity)."""
    if not 0 < n < m:
        raise ValueError(f"n_m [n, m] needs 0 < n < m, got [{n}, {m}]")
    rows = scores.reshape(scores.shape[0], -1)
    width = rows.shape[1]
    padded_width = math.ceil(width / m) * m
    if padded_width != width:
        pad = torch.full((rows.shape[0], padded_width - width), float("-inf"), device=scores.device)
        rows = torch.cat([rows, pad], dim=1)
    groups = rows.view(rows.shape[0], -1, m)
    index = torch.topk(groups, n, dim=2).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, index, True)
    return keep.view(rows.shape[0], padded_width)[:, :width].reshape(scores.shape)


def n_m_pruned(shape: tuple[int, ...], n: int, m: int) -> int:
    """How many weights `n_m_mask` prunes in a weight of `shape`: m - n of every full group of m, and of a row's
    last, shorter group only what exceeds n."""
    rows, width = shape[0], math.prod(shape[1:])
    return rows * ((width // m) * (m - n) + max(0, width % m - n))


def erk_densities(shapes: list[tuple[int, ...]], density: float, *, dense: set[int] | None = None) -> list[float]:
    """Erdős-Rényi-Kernel densities (Evci et al. 2020): ∝ Σdims/Πdims, capped at 1, overall = density; the layers
    in `dense` are kept whole and count against the budget."""
    sizes = [math.prod(shape) for shape in shapes]
    raw = [sum(shape) / math.prod(shape) for shape in shapes]
    dense = set(dense or ())
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        weight = sum(raw[i] * sizes[i] for i in range(len(shapes)) if i not in dense)
        if weight <= 0:
            return [1.0 if i in dense else 0.0 for i in range(len(shapes))]
        eps = budget / weight
        over = [i for i in range(len(shapes)) if i not in dense and eps * raw[i] > 1]
        if not over:
            return [1.0 if i in dense else min(1.0, max(0.0, eps * raw[i])) for i in range(len(shapes))]
        dense.add(max(over, key=lambda i: raw[i]))
