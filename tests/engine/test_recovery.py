"""Keeping masks in force and bringing weights back: momentum, DNS splicing, SET/RigL churn, DPF."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from worker.engine.pruning.pruner import Pruner


def _setup(pruning: dict, optimizer: str = "sgd", lr: float = 0.1, steps_per_epoch: int = 10,
           epochs: int = 4) -> tuple[nn.Sequential, torch.optim.Optimizer, Pruner]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    pruner = Pruner(model, opt, pruning, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=0, attach=False)
    pruner.start()
    return model, opt, pruner


def _train(model: nn.Module, opt: torch.optim.Optimizer, pruner: Pruner, steps: int,
           after: Callable[[int], None] | None = None) -> None:
    gen = torch.Generator().manual_seed(1)
    x_all = torch.randn(256, 20, generator=gen)
    y_all = (x_all[:, :4].argmax(dim=1))
    for step in range(steps):
        index = torch.randint(0, 256, (32,), generator=gen)
        pruner.before_forward()
        loss = F.cross_entropy(model(x_all[index]), y_all[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
        if after is not None:
            after(step)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_momentum_never_revives_a_pruned_weight(optimizer: str) -> None:
    pruning = {"target_sparsity": 0.7, "schedule": {"kind": "constant", "start_epoch": 0}, "recovery": {"kind": "none"}}
    model, opt, pruner = _setup(pruning, optimizer, lr=0.05)
    first = pruner.masks()

    def check(step: int) -> None:
        for layer in pruner.layers:
            pruned = ~layer.mask
            assert torch.equal(layer.mask, first[layer.name])
            assert (layer.weight.detach()[pruned] == 0).all()
            for value in opt.state[layer.weight].values():
                if isinstance(value, torch.Tensor) and value.shape == layer.weight.shape:
                    assert (value[pruned] == 0).all()

    _train(model, opt, pruner, 40, check)
    assert pruner.layers[0].weight.detach().count_nonzero() == first["0.weight"].sum()


def test_gradual_pruning_without_recovery_only_ever_removes_weights() -> None:
    pruning = {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 3,
                                                    "every_steps": 3}}
    model, opt, pruner = _setup(pruning)
    previous = pruner.masks()

    def check(step: int) -> None:
        for name, mask in pruner.masks().items():
            assert not (mask & ~previous[name]).any()
            previous[name] = mask

    _train(model, opt, pruner, 40, check)
    assert pruner.layers[0].mask.float().mean().item() == pytest.approx(0.2, abs=0.01)


def test_splice_brings_pruned_weights_back() -> None:
    pruning = {"target_sparsity": 0.6, "scope": "global",
               "schedule": {"kind": "constant", "start_epoch": 0, "every_steps": 2},
               "recovery": {"kind": "splice", "margin": 0.05}}
    model, opt, pruner = _setup(pruning, lr=0.3)
    initially_pruned = ~pruner.layers[0].mask.clone()
    dense_before = pruner.layers[0].weight.detach().clone()
    _train(model, opt, pruner, 40)
    layers, _ = pruner.epoch_stats()
    assert sum(layer.regrown for layer in layers) > 0
    assert (pruner.layers[0].mask & initially_pruned).any()  # some weight pruned at the start is back
    # dense weights at pruned positions kept learning (they received the gradient of the masked model)
    assert not torch.equal(pruner.layers[0].weight.detach()[initially_pruned], dense_before[initially_pruned])
    total = sum(layer.mask.numel() for layer in pruner.layers)
    kept = sum(int(layer.mask.sum()) for layer in pruner.layers)
    assert kept == total - round(0.6 * total)


def test_splice_with_threshold_uses_hysteresis_band() -> None:
    pruning = {"threshold": 0.1, "schedule": {"kind": "constant", "start_epoch": 0, "every_steps": 1},
               "recovery": {"kind": "splice", "margin": 0.2}}
    model, opt, pruner = _setup(pruning, lr=0.2)

    def check(step: int) -> None:
        for layer in pruner.layers:
            magnitude = layer.weight.detach().abs()
            assert (layer.mask[magnitude > 0.12]).all()
            assert not (layer.mask[magnitude < 0.08]).any()

    _train(model, opt, pruner, 20, check)


def test_forward_uses_masked_weights_under_splice_and_feedback() -> None:
    pruning = {"target_sparsity": 0.5, "schedule": {"kind": "constant", "start_epoch": 0},
               "recovery": {"kind": "feedback"}}
    model, opt, pruner = _setup(pruning)
    _train(model, opt, pruner, 5)
    x = torch.randn(8, 20)
    reference = nn.Sequential(*[m for m in model])
    with pruner.masked_weights():
        masked_out = model(x)
        weights = [layer.weight.detach().clone() for layer in pruner.layers]
    for layer, weight in zip(pruner.layers, weights, strict=True):
        assert torch.equal(weight, layer.weight.detach() * layer.mask)
    with torch.no_grad():
        for layer in pruner.layers:
            layer.weight.mul_(layer.mask)
    assert torch.allclose(masked_out, reference(x))


@pytest.mark.parametrize("kind", ["random", "gradient"])
def test_set_and_rigl_keep_sparsity_constant_while_weights_churn(kind: str) -> None:
    pruning = {"target_sparsity": 0.75, "schedule": {"kind": "constant", "start_epoch": 0},
               "recovery": {"kind": kind, "drop_fraction": 0.3, "every_steps": 4, "end_epoch": 4}}
    model, opt, pruner = _setup(pruning, lr=0.05)
    kept = {layer.name: int(layer.mask.sum()) for layer in pruner.layers}
    masks_before = pruner.masks()
    churn = {"pruned": 0, "regrown": 0}
    snapshot = {}

    def check(step: int) -> None:
        for layer in pruner.layers:
            assert int(layer.mask.sum()) == kept[layer.name]
            assert (layer.weight.detach()[~layer.mask] == 0).all()
            if kind == "gradient" and (step + 1) % 4 == 0:
                arrived = layer.mask & ~snapshot[layer.name]
                assert (layer.weight.detach()[arrived] == 0).all()  # RigL: new weights start at 0
            snapshot[layer.name] = layer.mask.clone()

    for layer in pruner.layers:
        snapshot[layer.name] = layer.mask.clone()
    pruner.epoch_stats()  # the initial pruning is not churn
    _train(model, opt, pruner, 40, check)
    layers, _ = pruner.epoch_stats()
    churn["pruned"] = sum(layer.pruned for layer in layers)
    churn["regrown"] = sum(layer.regrown for layer in layers)
    assert churn["pruned"] == churn["regrown"] > 0
    assert any(not torch.equal(pruner.masks()[n], m) for n, m in masks_before.items())


@pytest.mark.parametrize("kind", ["random", "gradient"])
def test_regrowth_under_a_gradual_ramp_runs_on_the_ramps_update_steps(kind: str) -> None:
    # Ramp from the end of epoch 1 (step 10) updating every 4 steps: drop-and-grow must follow that grid
    # (14, 18, ...), not multiples of 4 (12, 16, ...), or regrown weights face a magnitude update 2 steps later.
    pruning = {"target_sparsity": 0.8, "scope": "layer",
               "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 3, "every_steps": 4},
               "recovery": {"kind": kind, "drop_fraction": 0.3, "every_steps": 4, "end_epoch": 3}}
    model, opt, pruner = _setup(pruning, steps_per_epoch=10, epochs=4)
    regrew_at: list[int] = []

    def check(step: int) -> None:
        layers, _ = pruner.epoch_stats()
        if sum(layer.regrown for layer in layers) > 0:
            regrew_at.append(pruner.step)

    _train(model, opt, pruner, 30, check)
    assert regrew_at == [14, 18, 22, 26]  # at 30 the cosine-decayed drop fraction has reached 0


@pytest.mark.parametrize("kind", ["random", "gradient"])
def test_drop_and_grow_runs_at_least_once_an_epoch_by_default(kind: str) -> None:
    # A fixed default of 100 steps on 12-step epochs came after the last drop-and-grow step (96): the run trained
    # static sparse, labelled SET or RigL, with `regrown` 0 in every epoch.
    pruning = {"target_sparsity": 0.8, "schedule": {"kind": "constant", "start_epoch": 0},
               "recovery": {"kind": kind}}
    model, opt, pruner = _setup(pruning, steps_per_epoch=12, epochs=10)
    assert pruner.recovery.drop.every_steps == 12  # type: ignore[attr-defined]
    _train(model, opt, pruner, 96)
    assert sum(layer.regrown for layer in pruner.layers) > 0
    _, _, long_epochs = _setup(pruning, steps_per_epoch=469, epochs=2)
    assert long_epochs.recovery.drop.every_steps == 100  # type: ignore[attr-defined]  # RigL's ΔT where it fits


def test_an_interval_past_the_drop_and_grow_phase_is_refused_by_name() -> None:
    pruning = {"target_sparsity": 0.8, "schedule": {"kind": "constant", "start_epoch": 0},
               "recovery": {"kind": "gradient", "every_steps": 100}}
    with pytest.raises(ValueError, match=r"every_steps \(100\) is longer than the drop-and-grow phase .*\(until "
                                         r"step 96, the end of epoch 8 at 12 steps an epoch\): .* at most 95 steps"):
        _setup(pruning, steps_per_epoch=12, epochs=10)
    # No drop-and-grow phase at all (end_epoch ≤ start_epoch) is refused too: it trained as recovery 'none' under
    # the name RigL; static sparse training says so with recovery 'none'.
    with pytest.raises(ValidationError,
                       match=r"recovery.end_epoch \(0\) must be after pruning.schedule.start_epoch \(0\)"):
        _setup({**pruning, "recovery": {"kind": "gradient", "every_steps": 100, "end_epoch": 0}}, steps_per_epoch=12,
               epochs=10)


def test_an_unset_interval_is_left_out_of_stored_configs() -> None:
    # Stored as `"every_steps": null`, a worker from before the field could be unset (an int, default 100) refused
    # the config and failed every pruned run an upgraded API sent it.
    from prunescope.contract.config import RunConfig

    config = RunConfig.model_validate({"pruning": {"target_sparsity": 0.5, "recovery": {"kind": "gradient"}}})
    stored = config.model_dump(mode="json")
    assert "every_steps" not in stored["pruning"]["recovery"]
    assert RunConfig.model_validate(stored) == config
    chosen = RunConfig.model_validate({"pruning": {"target_sparsity": 0.5,
                                                   "recovery": {"kind": "gradient", "every_steps": 7}}})
    assert chosen.model_dump(mode="json")["pruning"]["recovery"]["every_steps"] == 7
