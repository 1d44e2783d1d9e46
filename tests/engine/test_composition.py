"""The pruner as composition: a registered toy criterion runs; auto-hooks equal the explicit protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from prunescope.contract import parse_pruning
from prunescope.contract.extensions import EXTRA_NAMES
from tests.engine.conftest import Epochs
from worker.engine.pruning import CRITERIA, Criterion, Pruner, register_criterion
from worker.engine.training import run_training, train_step


class KeepFirstInputs(Criterion):
    """A toy criterion: the lower a weight's input index, the more it is worth keeping."""

    def weight_scores(self, index: int) -> torch.Tensor:
        weight = self.layers[index].weight.data
        columns = torch.arange(weight.shape[1], dtype=weight.dtype, device=weight.device)
        return (-columns).expand_as(weight).clone()


@pytest.fixture
def toy_criterion() -> Iterator[str]:
    register_criterion("keep_first_inputs", KeepFirstInputs)
    yield "keep_first_inputs"
    CRITERIA.pop("keep_first_inputs")
    EXTRA_NAMES["criterion"].discard("keep_first_inputs")


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def test_a_registered_toy_criterion_is_accepted_by_the_config_and_prunes(toy_criterion: str) -> None:
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, optimizer, {"criterion": toy_criterion, "target_sparsity": 0.5,
                                       "schedule": {"kind": "one_shot", "start_epoch": 0}},
                    epochs=1, steps_per_epoch=1)
    mask = pruner.masks()["0.weight"]
    assert mask[:, :10].all() and not mask[:, 10:].any()


def test_a_registered_criterion_runs_a_whole_training_run(toy_criterion: str, tmp_path: Path,
                                                          make_config: Callable[..., dict]) -> None:
    records = Epochs()
    pruning = {"criterion": toy_criterion, "target_sparsity": 0.75, "schedule": {"kind": "one_shot", "start_epoch": 1}}
    run_training(make_config(pruning, training={"epochs": 1}), data_dir=tmp_path, on_epoch=records)
    mask = records[0]["masks"]["fc1.weight"]
    assert mask[:, :196].all() and not mask[:, 196:].any()


def test_an_unknown_criterion_is_a_field_located_error() -> None:
    with pytest.raises(ValidationError) as info:
        parse_pruning({"criterion": "keep_first_inputs", "target_sparsity": 0.5})
    assert info.value.errors()[0]["loc"] == ("criterion",)
    with pytest.raises(ValidationError) as info:
        Pruner(_model(), torch.optim.SGD(_model().parameters(), lr=0.1), {"target_sparsity": 1.5},
               epochs=1, steps_per_epoch=1)
    assert info.value.errors()[0]["loc"] == ("target_sparsity",)


HOOKED_CASES = {
    "gmp": {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 0, "end_epoch": 2, "every_steps": 3}},
    "dns": {"target_sparsity": 0.7, "scope": "global", "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 2,
                                                                     "every_steps": 2}, "recovery": {"kind": "splice"}},
    "rigl": {"target_sparsity": 0.7, "distribution": "erk", "schedule": {"kind": "constant", "start_epoch": 0},
             "recovery": {"kind": "gradient", "every_steps": 3}},
    "movement-l1": {"criterion": "movement", "target_sparsity": 0.6, "regularization": {"l1": 1e-3},
                    "schedule": {"kind": "linear", "start_epoch": 1, "end_epoch": 3, "every_steps": 4}},
}


def _train(attach: bool, pruning: dict) -> tuple[Pruner, nn.Module, list[float]]:
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step / 20))
    pruner = Pruner(model, optimizer, pruning, epochs=3, steps_per_epoch=8, seed=1, attach=attach)
    if not attach:
        pruner.start()
    gen = torch.Generator().manual_seed(2)
    x_all = torch.randn(256, 20, generator=gen)
    y_all = x_all[:, :4].argmax(dim=1)
    evals = []
    for step in range(24):
        index = torch.randint(0, 256, (32,), generator=gen)
        if attach:  # a plain user loop: nothing but forward, backward, step
            loss = F.cross_entropy(model(x_all[index]), y_all[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        else:
            train_step(model, optimizer, x_all[index], y_all[index], pruner, scheduler)
        if step % 5 == 0:  # evaluating in between must not disturb the dense weights
            with torch.no_grad(), pruner.masked_weights():
                evals.append(float(F.cross_entropy(model(x_all), y_all)))
    return pruner, model, evals


@pytest.mark.parametrize("name", sorted(HOOKED_CASES))
def test_auto_hooks_give_bit_identical_results_to_the_explicit_protocol(name: str) -> None:
    explicit, model_a, evals_a = _train(False, HOOKED_CASES[name])
    hooked, model_b, evals_b = _train(True, HOOKED_CASES[name])
    assert hooked.attached and hooked.step == explicit.step == 24
    for key, mask in explicit.masks().items():
        assert torch.equal(mask, hooked.masks()[key]), key
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)
    assert evals_a == evals_b
    assert [s.model_dump() for s in explicit.epoch_stats()[0]] == [s.model_dump() for s in hooked.epoch_stats()[0]]


def test_an_attached_pruner_refuses_the_explicit_protocol_until_detached() -> None:
    model = _model()
    pruner = Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1), HOOKED_CASES["gmp"], epochs=3,
                    steps_per_epoch=8)
    with pytest.raises(RuntimeError, match="attached"):
        pruner.after_step()
    pruner.detach()
    pruner.after_step()
    assert pruner.step == 1


def _mlp() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


BLOCK = {"target_sparsity": 0.5, "schedule": {"kind": "one_shot", "start_epoch": 0}}


def test_a_second_pruner_on_a_model_says_how_and_takes_over_once_the_first_is_detached() -> None:
    # A notebook cell run twice: the first Pruner still hooks the optimizer; two would mask every step twice.
    model, optimizer = _mlp()
    first = Pruner(model, optimizer, BLOCK, epochs=2, steps_per_epoch=4)
    with pytest.raises(ValueError, match=r"0\.weight is pruned by another prunescope\.Pruner .*detach\(\)"):
        Pruner(model, optimizer, BLOCK, epochs=2, steps_per_epoch=4)
    assert first.attached  # the refused one changed nothing
    first.detach()
    second = Pruner(model, optimizer, BLOCK, epochs=2, steps_per_epoch=4)
    assert second.attached and model[0].weight_mask is second.layers[0].mask
    with pytest.raises(RuntimeError, match=r"a newer prunescope\.Pruner took over"):
        first.attach()
    with pytest.raises(RuntimeError, match="took over"):
        first.after_step()


def test_a_taken_over_pruner_stops_counting_activations() -> None:
    model, optimizer = _mlp()
    block = {"criterion": "activation", "granularity": "neuron", "target_sparsity": 0.5,
             "schedule": {"kind": "one_shot", "start_epoch": 1}}
    first = Pruner(model, optimizer, block, epochs=2, steps_per_epoch=4)
    first.detach()
    Pruner(model, optimizer, block, epochs=2, steps_per_epoch=4)
    model.train()
    model(torch.randn(5, 8))
    assert first.criterion.counts == [0, 0]  # its forward hook was removed with the takeover


def test_a_copy_of_a_pruned_model_is_pruned_afresh_and_pickles(tmp_path: Path) -> None:
    import copy

    model, optimizer = _mlp()
    Pruner(model, optimizer, BLOCK, epochs=2, steps_per_epoch=4)
    twin = copy.deepcopy(model)  # e.g. lottery-ticket rewinding: a copy gets its own Pruner
    twin_pruner = Pruner(twin, torch.optim.SGD(twin.parameters(), lr=0.1), BLOCK, epochs=2, steps_per_epoch=4)
    assert twin_pruner.attached
    torch.save(model, tmp_path / "model.pt")  # nothing unpicklable is left on a pruned module
    assert torch.load(tmp_path / "model.pt", weights_only=False)[0].weight.shape == (16, 8)


def test_a_layer_pruned_by_torch_utils_prune_is_refused_with_the_fix() -> None:
    from torch.nn.utils import prune

    model, optimizer = _mlp()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    with pytest.raises(ValueError, match=r"torch\.nn\.utils\.prune .*prune\.remove\(\)"):
        Pruner(model, optimizer, BLOCK, epochs=2, steps_per_epoch=4)
