"""A Pruner in loops its authors never saw: submodule calls, closures, shared weights, a head registered first,
a frozen layer, channels_last, the explicit protocol without start(), pickled and copied models, bad arguments.
Each case is one a reviewer's own script hit; each test fails on the code before its fix."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.pruning import Pruner

CONSTANT = {"kind": "constant", "start_epoch": 0}


def _data(n: int = 128, features: int = 16, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=gen)
    return x, x[:, :classes].argmax(dim=1)


class EncoderHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@pytest.mark.parametrize("kind", ["splice", "feedback"])
def test_dense_weight_methods_mask_a_forward_that_calls_submodules(kind: str) -> None:
    # `model.head(model.encoder(x))` never calls the model itself: a hook on the model alone trained the dense net.
    torch.manual_seed(0)
    model = EncoderHead()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    Pruner(model, optimizer, {"target_sparsity": 0.8, "recovery": {"kind": kind}, "schedule": CONSTANT},
           epochs=1, steps_per_epoch=4)
    seen: list[float] = []
    model.encoder[0].register_forward_pre_hook(lambda m, _: seen.append(float((m.weight == 0).float().mean())))
    x, y = _data()
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model.head(model.encoder(x)), y).backward()
        optimizer.step()
    assert seen == [pytest.approx(0.8, abs=0.01)] * 3
    assert float((model.encoder[0].weight == 0).float().mean()) == 0.0  # dense again between steps


@pytest.mark.parametrize("kind", ["none", "splice"])
@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    lambda params: torch.optim.LBFGS(params, lr=0.5, max_iter=3),
], ids=["sgd", "lbfgs"])
def test_a_step_with_a_closure_keeps_the_masks(kind: str, make_optimizer) -> None:  # type: ignore[no-untyped-def]
    # The gradient is taken inside step(closure): masking it before the step (a plain pre-hook) came too early.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = make_optimizer(model.parameters())
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.7, "recovery": {"kind": kind}, "schedule": CONSTANT},
                    epochs=1, steps_per_epoch=4)
    x, y = _data()
    forwards: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        forwards.append(float((model[0].weight == 0).float().mean()))
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(4):
        optimizer.step(closure)
    assert forwards and min(forwards) >= 0.69  # every forward saw the pruned model
    with pruner.masked_weights():
        for layer in pruner.layers:
            assert torch.count_nonzero(layer.weight[~layer.mask]) == 0, layer.name
    if kind == "splice":
        assert float((model[0].weight == 0).float().mean()) < 0.1  # the dense weights are back after the step


def test_a_weight_shared_by_two_modules_is_one_layer_with_one_mask() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp, self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 32)
            self.out = nn.Linear(32, 4)
            self.b.weight = self.a.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.b(torch.relu(self.a(torch.relu(self.inp(x)))))))

    for kind in ("none", "splice"):
        model = Tied()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        pruner = Pruner(model, optimizer, {"target_sparsity": 0.75, "criterion": "random",
                                           "recovery": {"kind": kind}, "schedule": CONSTANT},
                        epochs=1, steps_per_epoch=2)
        assert [layer.name for layer in pruner.layers] == ["inp.weight", "a.weight", "out.weight"]
        x, y = _data()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        with pruner.masked_weights():
            assert float((model.a.weight == 0).float().mean()) == pytest.approx(0.75, abs=0.01)
        zeros_outside = float((model.a.weight == 0).float().mean())
        assert zeros_outside == (0.0 if kind == "splice" else pytest.approx(0.75, abs=0.01)), kind
        assert sum(s.shape[0] * s.shape[1] for s in pruner.epoch_stats()[0]) == 16 * 32 + 32 * 32 + 32 * 4


def test_neuron_pruning_keeps_the_classes_of_a_head_registered_before_the_body() -> None:
    class HeadFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(32, 4)
            self.body = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    torch.manual_seed(0)
    model = HeadFirst()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.5, "granularity": "neuron",
                                       "schedule": {"kind": "one_shot", "start_epoch": 1}}, epochs=2, steps_per_epoch=2)
    x, y = _data()
    for _ in range(4):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert {layer.name: layer.row_pruning for layer in pruner.layers} == {
        "head.weight": False, "body.0.weight": True, "body.2.weight": True}
    assert bool(pruner.layers[0].mask.all())  # all four classes live
    assert not bool(pruner.layers[1].mask.all())  # the hidden layers lost neurons instead


class HeadFirstLinear(nn.Module):
    """Registers its head before its body, runs the head last."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(32, 4)
        self.body = nn.Linear(16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def test_neuron_pruning_at_step_0_warns_when_the_first_forward_shows_another_output_layer() -> None:
    model = HeadFirstLinear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    Pruner(model, optimizer, {"target_sparsity": 0.5, "granularity": "neuron", "schedule": CONSTANT},
           epochs=1, steps_per_epoch=2)
    x, y = _data()
    F.cross_entropy(model(x), y).backward()
    with pytest.warns(UserWarning, match=r"head\.weight runs last.*start_epoch ≥ 1"):
        optimizer.step()


@pytest.mark.parametrize("kind", ["gradient", "random", "splice"])
def test_a_frozen_layer_does_not_stop_regrowth(kind: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    model[0].weight.requires_grad_(False)  # frozen: no gradient at any drop-and-grow step
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.5, "schedule": CONSTANT,
                                       "recovery": {"kind": kind, "every_steps": 2}}, epochs=2, steps_per_epoch=4)
    frozen_mask = pruner.layers[0].mask.clone()
    x, y = _data()
    for _ in range(8):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    if kind == "gradient":
        assert torch.equal(pruner.layers[0].mask, frozen_mask)  # no gradient: RigL leaves it as it is
        assert pruner.layers[1].regrown > 0


def test_random_regrowth_on_a_channels_last_conv() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.5, "schedule": CONSTANT,
                                       "recovery": {"kind": "random", "every_steps": 1}}, epochs=1, steps_per_epoch=3)
    x = torch.randn(8, 3, 6, 6).to(memory_format=torch.channels_last)
    y = torch.arange(8) % 4
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    conv = pruner.layers[0]
    assert conv.regrown > 0
    assert torch.count_nonzero(conv.weight[~conv.mask]) == 0
    assert torch.count_nonzero(conv.weight[conv.mask]) > 0.9 * int(conv.mask.sum())  # regrown ones got values


def test_the_explicit_protocol_applies_step_0_masks_without_start() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.8, "schedule": CONSTANT}, epochs=1, steps_per_epoch=4,
                    attach=False)
    x, y = _data()
    for _ in range(2):
        pruner.before_forward()
        F.cross_entropy(model(x), y).backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()
    assert pruner.sparsity() == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("block", [
    {"target_sparsity": 0.5, "recovery": {"kind": "splice"}, "schedule": CONSTANT},
    {"target_sparsity": 0.5, "criterion": "activation", "granularity": "neuron",
     "schedule": {"kind": "one_shot", "start_epoch": 1}},
], ids=["splice", "activation"])
def test_a_model_with_an_attached_pruner_saves_and_its_copies_leave_the_original_alone(block: dict,
                                                                                       tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    Pruner(model, torch.optim.SGD(model.parameters(), lr=0.05), block, epochs=2, steps_per_epoch=2)
    buffer = io.BytesIO()
    torch.save(model, buffer)  # a lambda hook did not pickle
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    restored(torch.randn(2, 16))  # its hooks are inert
    twin = copy.deepcopy(model)  # an EMA or best-model copy
    dense_before = model[0].weight.detach().clone()
    twin(torch.randn(2, 16))
    assert torch.equal(model[0].weight, dense_before)  # running the copy swapped nothing in the original


@pytest.mark.parametrize(("epochs", "steps", "field"), [(4, 0, "steps_per_epoch"), (0, 4, "epochs"),
                                                        (2, 2.5, "steps_per_epoch")])
def test_bad_epochs_or_steps_are_refused_by_name(epochs: int, steps: float, field: str) -> None:
    model = nn.Sequential(nn.Linear(16, 4))
    with pytest.raises(ValueError, match=rf"{field} must be a whole number ≥ 1"):
        Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1), {"target_sparsity": 0.5},
               epochs=epochs, steps_per_epoch=steps)  # type: ignore[arg-type]


def test_a_model_without_linear_or_conv_is_told_what_prunes() -> None:
    model = nn.Sequential(nn.Embedding(10, 8), nn.LayerNorm(8))
    with pytest.raises(ValueError, match=r"nn\.Linear and convolution .* modules, and this model has none"):
        Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1), {"target_sparsity": 0.5}, epochs=1,
               steps_per_epoch=1)


def test_finalize_warns_when_the_schedule_never_reached_its_target() -> None:
    # steps_per_epoch=len(loader) under gradient accumulation: a third of the steps the schedule counts on.
    model = nn.Sequential(nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 0,
                                                                             "every_steps": 1}},
                    epochs=4, steps_per_epoch=6)
    x, y = _data()
    for _ in range(8):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    with pytest.warns(UserWarning, match=r"after 18 optimizer steps, but 8 ran .*len\(loader\) // accumulation"):
        pruner.finalize()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = Pruner(nn.Sequential(nn.Linear(16, 4)), optimizer, {"target_sparsity": 0.5, "schedule": CONSTANT},
                      epochs=1, steps_per_epoch=1)
        full.finalize()  # the constant schedule is there from the start


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_neuron_pruning_leaves_every_hidden_layer_a_neuron(scope: str) -> None:
    # Global neuron pruning at 0.9 emptied LeNet's fc2 (fc3 then saw no input): a dead network that "completed".
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 4))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # the small layer scores lowest: the first to go under a global ranking
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.99, "granularity": "neuron", "scope": scope,
                                       "schedule": CONSTANT}, epochs=1, steps_per_epoch=2)
    for layer in pruner.layers[:2]:
        assert int(layer.unit_mask(True).sum()) >= 1, layer.name


def test_neuron_pruning_of_the_output_layer_alone_is_refused() -> None:
    # It ran to "completed" at sparsity 0 while every record said target 0.7.
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    with pytest.raises(ValueError, match=r"selects only the output layer '2\.weight', whose rows are the classes"):
        Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1),
               {"target_sparsity": 0.7, "granularity": "neuron", "layers": {"include": ["2.*"]}},
               epochs=1, steps_per_epoch=1)


def test_neuron_pruning_of_a_head_registered_first_and_selected_alone_fails_once_it_runs() -> None:
    # Selected by name, the head (registered first) looked like a hidden layer until the first forward: the run
    # then "completed" at sparsity 0 against a target of 0.8.
    model = HeadFirstLinear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    Pruner(model, optimizer, {"target_sparsity": 0.8, "granularity": "neuron", "layers": {"include": ["head.*"]},
                              "schedule": {"kind": "one_shot", "start_epoch": 1}}, epochs=2, steps_per_epoch=2)
    x, y = _data()
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match=r"selects only the output layer 'head\.weight'"):
        optimizer.step()
