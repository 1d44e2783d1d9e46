"""A detached checkpoint shares nothing mutable with the live run: tensors, lists and dicts are copies."""

from __future__ import annotations

import random

import torch

from worker.engine.checkpoint import Checkpoint, rng_state


def test_a_detached_checkpoint_keeps_its_values_when_the_live_state_changes() -> None:
    random.seed(1)
    live = Checkpoint(epoch=1, config={"training": {"lr": 0.1, "tags": ["a"]}}, model={"w": torch.ones(3)},
                      optimizer={"state": {0: {"step": 3}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
                      scheduler={}, pruner=None, rng=rng_state(torch.Generator().manual_seed(0)))
    copy = live.detached()
    expected_rng = list(live.rng["random"]["internal"])
    live.model["w"].add_(1)
    live.config["training"]["tags"].append("b")
    live.optimizer["param_groups"][0]["params"].append(1)
    live.rng["random"]["internal"][0] += 1  # a list of 625 ints: copied whole, not shared
    assert torch.equal(copy.model["w"], torch.ones(3))
    assert copy.config["training"]["tags"] == ["a"] and copy.optimizer["param_groups"][0]["params"] == [0]
    assert copy.rng["random"]["internal"] == expected_rng
    assert copy.rng["random"]["internal"] is not live.rng["random"]["internal"]
