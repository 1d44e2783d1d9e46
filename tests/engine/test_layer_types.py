"""Every convolution is pruned, not only Conv2d: 1d (audio, sequences), 3d (video, volumes), grouped and depthwise,
transposed (decoders). Before, these trained dense while the run reported the Linear layers' sparsity alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.pruning import Pruner
from worker.engine.training import count_flops

CONSTANT = {"kind": "constant", "start_epoch": 0}


def conv1d_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1, groups=8),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 4))


def conv3d_net() -> nn.Module:
    return nn.Sequential(nn.Conv3d(2, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4 * 4, 4))


def decoder_net() -> nn.Sequential:  # a transposed conv upsamples, then a Linear classifies
    return nn.Sequential(nn.ConvTranspose2d(2, 6, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 4))


NETS = {"conv1d": (conv1d_net, (2, 16)), "conv3d": (conv3d_net, (2, 4, 4, 4)), "transposed": (decoder_net, (2, 4, 4))}


def _train(model: nn.Module, shape: tuple[int, ...], pruning: dict, steps: int = 6) -> Pruner:
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = Pruner(model, optimizer, pruning, epochs=1, steps_per_epoch=steps)
    x = torch.randn(32, *shape)
    y = torch.randint(0, 4, (32,))
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    pruner.finalize()
    return pruner


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("kind", ["none", "gradient", "random", "splice"])
def test_every_convolution_is_pruned_to_its_target(net: str, kind: str) -> None:
    make, shape = NETS[net]
    model = make()
    pruner = _train(model, shape, {"target_sparsity": 0.75, "recovery": {"kind": kind, "every_steps": 2},
                                   "schedule": CONSTANT})
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert [layer.module for layer in pruner.layers][:len(convs)] == convs
    for conv in convs:
        assert float((conv.weight == 0).float().mean()) == pytest.approx(0.75, abs=0.02)
    assert pruner.sparsity() == pytest.approx(0.75, abs=0.02)


def test_neuron_granularity_prunes_whole_conv1d_filters() -> None:
    model = conv1d_net()
    _train(model, (2, 16), {"target_sparsity": 0.5, "granularity": "neuron", "schedule": CONSTANT})
    first = model[0].weight.reshape(8, -1)
    alive = first.ne(0).any(dim=1)
    assert int(alive.sum()) == 4
    assert bool(first[~alive].eq(0).all())
    assert bool(model[0].bias[~alive].eq(0).all())  # a pruned filter emits nothing


def test_neuron_granularity_refuses_a_transposed_conv_by_name() -> None:
    model = nn.Sequential(*list(decoder_net())[:3], nn.Linear(6 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"cannot prune 0\.weight: a transposed convolution's weight rows"):
        Pruner(model, optimizer, {"target_sparsity": 0.5, "granularity": "neuron"}, epochs=1, steps_per_epoch=1)
    # excluded, the rest is pruned by neuron
    Pruner(model, optimizer, {"target_sparsity": 0.5, "granularity": "neuron", "layers": {"exclude": ["0.*"]}},
           epochs=1, steps_per_epoch=1)


def test_a_lazy_module_is_refused_until_it_has_run() -> None:
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lazy module that has not run yet"):
        Pruner(model, optimizer, {"target_sparsity": 0.5}, epochs=1, steps_per_epoch=1)
    model(torch.zeros(1, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert len(Pruner(model, optimizer, {"target_sparsity": 0.5}, epochs=1, steps_per_epoch=1).layers) == 2


def test_flops_count_every_convolution_at_its_positions() -> None:
    conv = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, bias=False))
    assert count_flops(conv, (2, 10)) == 2 * (3 * 2 * 3) * 10
    transposed = nn.Sequential(nn.ConvTranspose2d(2, 3, 2, stride=2, bias=False))
    assert count_flops(transposed, (2, 4, 4)) == 2 * (2 * 3 * 2 * 2) * 16  # each weight once per input position
