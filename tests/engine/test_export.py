"""The pruned-model artifact: masked weights, torch.nn.utils.prune form, physically smaller neuron models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from worker.engine.export import load_exported, shrink_model, to_torch_prune
from worker.engine.networks import build_model
from worker.engine.training import run_training


@pytest.mark.parametrize(("model", "recovery"), [("lenet300_100", "none"), ("lenet5", "none"),
                                                 ("small_cnn", "none")])
def test_neuron_pruned_model_shrinks_to_a_smaller_model_with_equal_outputs(
        tmp_path: Path, make_config: Callable[..., dict], model: str, recovery: str) -> None:
    pruning = {"granularity": "neuron", "criterion": "magnitude", "target_sparsity": 0.5,
               "schedule": {"kind": "one_shot", "start_epoch": 1}, "recovery": {"kind": recovery}}
    config = make_config(pruning, model={"name": model}, training={"epochs": 1},
                         dataset={"name": "synthetic", "limit": 64})
    run_training(config, data_dir=tmp_path, checkpoint_path=tmp_path / "ckpt.pt")
    pruned, _, _ = load_exported(tmp_path / "model.pt")
    small = shrink_model(pruned)
    n_pruned = sum(p.numel() for p in pruned.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < 0.7 * n_pruned
    shape = (3, 32, 32) if model == "small_cnn" else (1, 28, 28)
    x = torch.randn(16, *shape)
    pruned.eval()
    small.eval()
    with torch.no_grad():
        assert torch.allclose(pruned(x), small(x), atol=1e-5)


def test_export_loads_into_torch_prune_form_with_the_same_outputs(tmp_path: Path,
                                                                  make_config: Callable[..., dict]) -> None:
    pruning = {"target_sparsity": 0.9, "schedule": {"kind": "one_shot"}, "recovery": {"kind": "splice"}}
    run_training(make_config(pruning, training={"epochs": 1}), data_dir=tmp_path,
                 checkpoint_path=tmp_path / "ckpt.pt")
    model, masks, artifact = load_exported(tmp_path / "model.pt")
    for name, mask in masks.items():
        assert (artifact["state_dict"][name][~mask] == 0).all()
        assert mask.float().mean().item() == pytest.approx(0.1, abs=1e-3)
    fresh = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
    fresh.load_state_dict(artifact["state_dict"])
    to_torch_prune(fresh, masks)
    assert isinstance(fresh.fc1, nn.Linear) and hasattr(fresh.fc1, "weight_orig")
    assert torch.equal(fresh.fc1.weight_mask.bool(), masks["fc1.weight"])
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x))
