"""The model zoo: layer names the API knows without torch, paper architectures, and exact channel shrinking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunescope.contract.config import ModelName, choices
from prunescope.layernames import builtin_layer_names
from worker.engine.export import export_model, export_shrunk
from worker.engine.networks import build_model
from worker.engine.networks.resnet import ShortcutA
from worker.engine.pruning import Pruner, prunable_weights
from worker.engine.shrink import export_torchscript, shrink_conv_model


@pytest.mark.parametrize("model", choices(ModelName))
def test_torch_free_layer_names_match_the_built_models(model: str) -> None:
    net = build_model({"name": model}, (3, 32, 32), 10)
    assert [name for name, _ in prunable_weights(net)] == builtin_layer_names({"name": model})


def test_mlp_layer_names_follow_hidden_and_width_multiplier_keeps_names() -> None:
    net = build_model({"name": "mlp", "hidden": [5, 6, 7]}, (1, 8, 8), 10)
    assert [n for n, _ in prunable_weights(net)] == builtin_layer_names({"name": "mlp", "hidden": [5, 6, 7]})
    thin = build_model({"name": "wrn22_2", "width_multiplier": 0.02}, (3, 32, 32), 10)
    assert [n for n, _ in prunable_weights(thin)] == builtin_layer_names({"name": "wrn22_2"})
    assert builtin_layer_names({"name": "someone_elses_model"}) is None


def test_an_mlp_with_no_hidden_layer_is_a_linear_classifier() -> None:
    # hidden: [] silently built the default 256-256 MLP while the run's config said [].
    net = build_model({"name": "mlp", "hidden": []}, (1, 8, 8), 10)
    assert [(n, tuple(m.weight.shape)) for n, m in prunable_weights(net)] == [("fc1.weight", (10, 64))]
    assert builtin_layer_names({"name": "mlp", "hidden": []}) == ["fc1.weight"]


@pytest.mark.parametrize(("model", "millions"), [("resnet20", 0.27), ("resnet32", 0.46), ("resnet56", 0.85),
                                                 ("vgg16_bn", 14.72), ("wrn22_2", 1.08)])
def test_paper_models_have_the_papers_sizes(model: str, millions: float) -> None:
    net = build_model({"name": model}, (3, 32, 32), 10)
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)


def test_resnet_uses_parameter_free_option_a_shortcuts() -> None:
    net = build_model({"name": "resnet20"}, (3, 32, 32), 10)
    shortcuts = [m for m in net.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2 and all(not list(m.parameters()) for m in shortcuts)
    x = torch.randn(2, 16, 8, 8)
    out = ShortcutA(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and not out[:, :8].any() and not out[:, 24:].any()


@pytest.mark.parametrize("model", ["resnet20", "vgg16_bn", "wrn22_2"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_paper_models_run_on_cifar_and_mnist_shapes(model: str, shape: tuple[int, int, int]) -> None:
    net = build_model({"name": model, "width_multiplier": 0.125}, shape, 100)
    assert net(torch.zeros(2, *shape)).shape == (2, 100)


def test_unknown_model_names_what_is_known() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*resnet20"):
        build_model({"name": "nope"}, (3, 32, 32), 10)


def _channel_pruned(model: str, shape: tuple[int, int, int] = (3, 32, 32)) -> nn.Module:
    """A small model trained a few steps while the pruner removes half of the channels (neuron granularity)."""
    torch.manual_seed(0)
    net = build_model({"name": model, "width_multiplier": 0.25}, shape, 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    pruning = {"criterion": "magnitude", "granularity": "neuron", "target_sparsity": 0.5,
               "schedule": {"kind": "one_shot", "start_epoch": 0}}
    pruner = Pruner(net, optimizer, pruning, epochs=1, steps_per_epoch=4, attach=False)  # steps driven below
    pruner.start()
    for _ in range(4):
        x, y = torch.randn(16, *shape), torch.randint(0, 10, (16,))
        pruner.before_forward()
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()
    pruner.finalize()
    return net.eval()


@pytest.mark.parametrize("model", ["resnet20", "vgg16_bn", "wrn22_2"])
def test_shrunk_conv_net_gives_the_masked_models_outputs(model: str) -> None:
    masked = _channel_pruned(model)
    small = shrink_conv_model(masked, (3, 32, 32))
    params = sum(p.numel() for p in small.parameters())
    assert params < 0.9 * sum(p.numel() for p in masked.parameters())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-4)


def test_shrunk_torchscript_loads_without_prunescope(tmp_path: Path) -> None:
    masked = _channel_pruned("resnet20")
    masks = {name: module.weight.detach().ne(0) for name, module in prunable_weights(masked)}
    artifact = export_model(masked, masks, tmp_path / "model.pt", config={"model": {
        "name": "resnet20", "width_multiplier": 0.25}}, input_shape=(3, 32, 32), num_classes=10)
    shrunk = export_shrunk(artifact, tmp_path / "shrunk.pt")
    x = torch.randn(4, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(masked(x), tmp_path / "expected.pt")
    # A fresh interpreter where importing prunescope or worker fails: only torch may be needed.
    script = ("import sys, torch; sys.modules['prunescope'] = None; sys.modules['worker'] = None; "
              f"m = torch.jit.load({str(shrunk)!r}); x = torch.load({str(tmp_path / 'x.pt')!r}); "
              f"e = torch.load({str(tmp_path / 'expected.pt')!r}); "
              "print(bool(torch.allclose(m(x), e, atol=1e-4)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_torchscript_export_of_a_sequential_model(tmp_path: Path) -> None:
    net = build_model({"name": "lenet300_100"}, (1, 28, 28), 10).eval()
    path = export_torchscript(net, (1, 28, 28), tmp_path / "lenet.pt")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(path))(x), net(x))


def test_shrinking_refuses_models_without_channel_chains() -> None:
    with pytest.raises(ValueError, match="channel_chains"):
        shrink_conv_model(build_model({"name": "lenet5"}, (1, 28, 28), 10), (1, 28, 28))
