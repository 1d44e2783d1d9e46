"""A Pruner in a user's own loop says when an update leaves a pruned layer with no weight (the managed loop's guard
fails such a run; a user's loop had nothing to tell it why it trains at chance)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import prunescope
from worker.engine.guards import emptied_advice

GLOBAL_ONE_SHOT = {"target_sparsity": 0.95, "scope": "global", "schedule": {"kind": "one_shot", "start_epoch": 0}}


def mlp() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def emptied_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "removed every weight" in str(w.message)]


def test_a_global_cut_that_empties_a_layer_is_warned_once_with_the_managed_loops_advice() -> None:
    # MLP 64-128-64-10, global 95 % at step 0: 2.weight kept nothing, the run trained at chance, nothing said.
    model, optimizer = mlp()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = prunescope.Pruner(model, optimizer, GLOBAL_ONE_SHOT, epochs=3, steps_per_epoch=4)
        for _ in range(12):  # more updates never warn again for the same layer
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(8, 64)), torch.randint(0, 10, (8,))).backward()
            optimizer.step()
    assert not bool(pruner.masks()["2.weight"].any())
    advice = emptied_advice(pruner.config)
    assert "scope 'layer'" in advice  # the global scope's advice
    assert emptied_warnings(caught) == [f"Pruner: pruning removed every weight of 2.weight, which cuts the network: "
                                        f"{advice}"]


@pytest.mark.parametrize("recovery", [{"kind": "none"}, {"kind": "random", "every_steps": 1}])
def test_layers_that_keep_weights_warn_nothing(recovery: dict[str, object]) -> None:
    model, optimizer = mlp()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prunescope.Pruner(model, optimizer, {**GLOBAL_ONE_SHOT, "scope": "layer", "recovery": recovery,
                                             "schedule": {"kind": "constant"}}, epochs=3, steps_per_epoch=4)
        for _ in range(6):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(8, 64)), torch.randint(0, 10, (8,))).backward()
            optimizer.step()
    assert emptied_warnings(caught) == []
