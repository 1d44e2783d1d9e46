"""Criteria and granularities: which weights or neurons each one removes, thresholds, L1, layer globs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.engine.conftest import Epochs
from worker.engine.pruning.pruner import Pruner
from worker.engine.training import run_training


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def _step(model: nn.Module, opt: torch.optim.Optimizer, pruner: Pruner, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 20, generator=gen)
    y = x[:, :4].argmax(dim=1)
    pruner.before_forward()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    pruner.after_backward()
    opt.step()
    pruner.after_step()


def _pruner(pruning: dict, model: nn.Module, lr: float = 0.0) -> tuple[torch.optim.Optimizer, Pruner]:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    pruner = Pruner(model, opt, pruning, epochs=2, steps_per_epoch=4, attach=False)
    pruner.start()
    return opt, pruner


def test_gradient_criterion_prunes_the_smallest_taylor_scores() -> None:
    model = _model()
    opt, pruner = _pruner({"criterion": "gradient", "target_sparsity": 0.5,
                           "schedule": {"kind": "one_shot", "start_epoch": 0}}, model)
    weights = model[0].weight.detach().clone()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 20, generator=gen)
    loss = F.cross_entropy(model(x), x[:, :4].argmax(dim=1))
    grad = torch.autograd.grad(loss, model[0].weight)[0]
    _step(model, opt, pruner)  # lr 0: scores from exactly this gradient, update after the first step
    score = (weights * grad).abs()
    mask = pruner.layers[0].mask
    assert mask.sum() == score.numel() // 2
    assert score[mask].min() >= score[~mask].max()


def test_movement_criterion_keeps_weights_moving_away_from_zero() -> None:
    model = _model()
    opt, pruner = _pruner({"criterion": "movement", "target_sparsity": 0.5,
                           "schedule": {"kind": "one_shot", "start_epoch": 0}}, model)
    weights = model[2].weight.detach().clone()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 20, generator=gen)
    grad = torch.autograd.grad(F.cross_entropy(model(x), x[:, :4].argmax(dim=1)), model[2].weight)[0]
    _step(model, opt, pruner)
    score = -(weights * grad)
    mask = pruner.layers[1].mask
    assert score[mask].min() >= score[~mask].max()


def test_random_criterion_is_reproducible_from_the_seed() -> None:
    masks = []
    for _ in range(2):
        model = _model()
        _, pruner = _pruner({"criterion": "random", "target_sparsity": 0.7,
                             "schedule": {"kind": "constant", "start_epoch": 0}},
                            model)
        masks.append(pruner.masks())
    assert all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])
    assert masks[0]["0.weight"].float().mean().item() == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("stat", ["mean_abs", "apoz"])
def test_activation_criterion_disables_the_least_active_neurons(stat: str) -> None:
    model = _model()
    with torch.no_grad():
        model[0].bias[:8] = -100.0  # these 8 neurons never fire: ReLU output always 0
    opt, pruner = _pruner({"criterion": "activation", "activation_stat": stat, "granularity": "neuron",
                           "target_sparsity": 0.25, "schedule": {"kind": "one_shot", "start_epoch": 0}}, model)
    _step(model, opt, pruner)
    rows = pruner.layers[0].mask.any(dim=1)
    assert rows[:8].sum() == 0 and rows[8:].all()
    assert (model[0].bias.detach()[:8] == 0).all()  # a disabled neuron's bias goes with it
    assert pruner.layers[2].mask.all()  # the output layer's rows are the classes: never pruned


def test_activation_criterion_scores_a_linear_layers_features_on_token_inputs() -> None:
    # A Linear over (batch, tokens, features): its units are the last dimension, not dimension 1 (the tokens).
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(20, 32), nn.Linear(32, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x.view(64, 5, 4).repeat(1, 1, 5)))).mean(dim=1)

    torch.manual_seed(0)
    model = Tokens()
    with torch.no_grad():
        model.fc1.bias[:8] = -100.0
    opt, pruner = _pruner({"criterion": "activation", "granularity": "neuron", "target_sparsity": 0.25,
                           "schedule": {"kind": "one_shot", "start_epoch": 0}}, model)
    _step(model, opt, pruner)
    rows = pruner.layers[0].mask.any(dim=1)
    assert rows[:8].sum() == 0 and rows[8:].all()


def test_activation_criterion_names_a_layer_whose_module_never_runs() -> None:
    class Skips(nn.Module):  # like nn.MultiheadAttention's out_proj: a Linear whose weight is used directly
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.unused, self.fc2 = nn.Linear(20, 32), nn.Linear(32, 32), nn.Linear(32, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.fc1(x))
            return self.fc2(torch.relu(F.linear(h, self.unused.weight, self.unused.bias)))

    model = Skips()
    opt, pruner = _pruner({"criterion": "activation", "granularity": "neuron", "target_sparsity": 0.25,
                           "schedule": {"kind": "one_shot", "start_epoch": 0}}, model)
    with pytest.raises(ValueError, match=r"saw no output of unused\.weight .*pruning\.layers\.exclude"):
        _step(model, opt, pruner)


def test_neuron_granularity_prunes_whole_rows() -> None:
    model = _model()
    _, pruner = _pruner({"granularity": "neuron", "target_sparsity": 0.5, "scope": "global",
                         "schedule": {"kind": "constant", "start_epoch": 0}}, model)
    for layer in pruner.layers[:2]:
        per_row = layer.mask.sum(dim=1)
        assert ((per_row == 0) | (per_row == layer.mask.shape[1])).all()
    kept = sum(int(layer.mask.sum()) for layer in pruner.layers)
    total = sum(layer.mask.numel() for layer in pruner.layers)
    assert 1 - kept / total == pytest.approx(0.5, abs=0.05)


def test_absolute_threshold_prunes_scores_below_theta() -> None:
    model = _model()
    _, pruner = _pruner({"threshold": 0.1, "schedule": {"kind": "constant", "start_epoch": 0}}, model)
    for layer in pruner.layers:
        original = layer.mask  # weights below θ are now zero
        assert (layer.weight.detach().abs()[original] >= 0.1).all()
        assert layer.threshold == 0.1


def test_std_scale_threshold_uses_each_layers_std() -> None:
    model = _model()
    stds = [model[i].weight.detach().std().item() for i in (0, 2, 4)]
    _, pruner = _pruner({"threshold": {"std_scale": 0.5}, "schedule": {"kind": "constant", "start_epoch": 0}}, model)
    for layer, std in zip(pruner.layers, stds, strict=True):
        assert layer.threshold == pytest.approx(0.5 * std)


def test_l1_regularisation_drives_weights_towards_zero(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    def mean_abs(l1: float) -> float:
        pruning = {"threshold": 0.0, "regularization": {"l1": l1}, "schedule": {"kind": "constant", "start_epoch": 0}}
        run_training(make_config(pruning), data_dir=tmp_path, checkpoint_path=tmp_path / f"{l1}" / "c.pt")
        state = torch.load(tmp_path / f"{l1}" / "model.pt", weights_only=True)["state_dict"]
        return float(state["fc1.weight"].abs().mean())

    assert mean_abs(1e-2) < 0.8 * mean_abs(0.0)


def test_layer_globs_choose_the_pruned_weights(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    records = Epochs()
    pruning = {"target_sparsity": 0.5, "schedule": {"kind": "constant", "start_epoch": 0},
               "layers": {"include": ["fc*"], "exclude": ["fc3.*"]}}
    run_training(make_config(pruning, training={"epochs": 1}), data_dir=tmp_path, on_epoch=records)
    assert [layer["name"] for layer in records[0]["layers"]] == ["fc1.weight", "fc2.weight"]


def test_erk_gives_small_layers_more_density(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    records = Epochs()
    pruning = {"target_sparsity": 0.9, "distribution": "erk", "schedule": {"kind": "constant", "start_epoch": 0}}
    run_training(make_config(pruning, training={"epochs": 1}), data_dir=tmp_path, on_epoch=records)
    sparsities = [layer["sparsity"] for layer in records[0]["layers"]]
    assert sparsities[0] > sparsities[1] > sparsities[2]
    assert records[0]["sparsity"] == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize("recovery", ["none", "feedback"])
def test_n_m_pattern_holds_in_every_group_after_training(tmp_path: Path, make_config: Callable[..., dict],
                                                         recovery: str) -> None:
    records = Epochs()
    pruning = {"granularity": "n:m", "n_m": [2, 4], "schedule": {"kind": "linear", "every_steps": 2},
               "recovery": {"kind": recovery}}
    run_training(make_config(pruning), data_dir=tmp_path, on_epoch=records)
    for name, mask in records[-1]["masks"].items():
        groups = torch.from_numpy(mask).reshape(mask.shape[0], -1, 4)
        assert (groups.sum(dim=2) == 2).all(), name
    assert records[-1]["sparsity"] == pytest.approx(0.5)
    assert records[-1]["target_sparsity"] == pytest.approx(0.5)
