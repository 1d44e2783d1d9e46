"""Mask selection against torch.nn.utils.prune as an oracle, N:M groups and ERK densities."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from worker.engine.pruning.pruner import Pruner
from worker.engine.pruning.ranking import erk_densities, n_m_mask


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10))


def _one_shot_pruner(model: nn.Module, amount: float, scope: str) -> Pruner:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    config = {"criterion": "magnitude", "scope": scope, "target_sparsity": amount,
              "schedule": {"kind": "one_shot", "start_epoch": 0}}
    pruner = Pruner(model, optimizer, config, epochs=1, steps_per_epoch=1, attach=False)
    pruner.start()
    return pruner


@pytest.mark.parametrize("amount", [0.1, 0.5, 0.77, 0.9, 0.99])
def test_layer_magnitude_masks_equal_torch_l1_unstructured(amount: float) -> None:
    model = _model()
    oracle = copy.deepcopy(model)
    masks = _one_shot_pruner(model, amount, "layer").masks()
    for index in (0, 2, 4):
        prune.l1_unstructured(oracle[index], "weight", amount=amount)
        assert torch.equal(masks[f"{index}.weight"], oracle[index].weight_mask.bool())


@pytest.mark.parametrize("amount", [0.2, 0.6, 0.95])
def test_global_magnitude_masks_equal_torch_global_unstructured(amount: float) -> None:
    model = _model()
    oracle = copy.deepcopy(model)
    masks = _one_shot_pruner(model, amount, "global").masks()
    prune.global_unstructured([(oracle[i], "weight") for i in (0, 2, 4)], pruning_method=prune.L1Unstructured,
                              amount=amount)
    for index in (0, 2, 4):
        assert torch.equal(masks[f"{index}.weight"], oracle[index].weight_mask.bool())


def test_pruned_weights_are_zero_and_kept_weights_untouched() -> None:
    model = _model()
    before = model[0].weight.detach().clone()
    masks = _one_shot_pruner(model, 0.5, "layer").masks()
    after = model[0].weight.detach()
    assert torch.equal(after[~masks["0.weight"]], torch.zeros(int((~masks["0.weight"]).sum())))
    assert torch.equal(after[masks["0.weight"]], before[masks["0.weight"]])


@pytest.mark.parametrize(("n", "m", "width"), [(2, 4, 16), (1, 4, 10), (3, 8, 37)])
def test_n_m_mask_keeps_at_most_n_in_every_group_of_m(n: int, m: int, width: int) -> None:
    scores = torch.rand(5, width)
    mask = n_m_mask(scores, n, m)
    for start in range(0, width, m):
        group = mask[:, start: start + m]
        assert (group.sum(dim=1) <= n).all()
        if group.shape[1] == m:
            assert (group.sum(dim=1) == n).all()
            # the kept ones are the group's largest scores
            kept_min = torch.where(group, scores[:, start: start + m], torch.inf).min(dim=1).values
            dropped_max = torch.where(group, -torch.inf, scores[:, start: start + m]).max(dim=1).values
            assert (kept_min >= dropped_max).all()


def test_erk_densities_hit_the_overall_density_and_favour_small_layers() -> None:
    shapes = [(300, 784), (100, 300), (10, 100)]
    densities = erk_densities(shapes, 0.05)
    sizes = [a * b for a, b in shapes]
    overall = sum(d * s for d, s in zip(densities, sizes, strict=True)) / sum(sizes)
    assert overall == pytest.approx(0.05, rel=1e-6)
    assert densities[0] < densities[1] < densities[2] <= 1.0
