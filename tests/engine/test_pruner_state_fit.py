"""A Pruner refuses a state saved for other layers before it changes anything."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from worker.engine.pruning.pruner import Pruner

CONFIG = {"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 0, "end_epoch": 1, "every_steps": 1}}


def pruner(*widths: int) -> tuple[Pruner, nn.Module]:
    layers = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    model = nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Pruner(model, optimizer, CONFIG, epochs=2, steps_per_epoch=12), model


def trained(*widths: int) -> Pruner:
    p, model = pruner(*widths)
    for _ in range(24):
        model(torch.randn(4, widths[0])).sum().backward()
        p.optimizer.step()
        p.optimizer.zero_grad()
    return p


@pytest.mark.parametrize(("widths", "message"), [
    ((8, 10, 3), "masks do not fit this model's weights: 0.weight \\[32, 8\\] \\(here \\[10, 8\\]\\)"),
    ((8, 32, 16, 3), "saved for layers \\['0.weight', '1.weight'\\], this Pruner prunes"),
])
def test_a_state_of_other_layers_is_refused_and_nothing_is_loaded(widths: tuple[int, ...], message: str) -> None:
    # torch's "size of tensor a (32) must match ..." (or a KeyError) came after step 24 and some masks were loaded.
    state = trained(8, 32, 3).state_dict()
    other, _ = pruner(*widths)
    before = {layer.name: layer.mask.clone() for layer in other.layers}
    with pytest.raises(ValueError, match=message):
        other.load_state_dict(state)
    assert other.step == 0
    assert all(torch.equal(layer.mask, before[layer.name]) for layer in other.layers)


def test_a_state_of_the_same_layers_loads() -> None:
    source = trained(8, 32, 3)
    target, _ = pruner(8, 32, 3)
    target.load_state_dict(source.state_dict())
    assert target.step == source.step
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(target.layers, source.layers, strict=True))
