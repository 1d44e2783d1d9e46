"""The model zoo: built-in classifiers and plugin models, all built from a config's `model` block.

Built-ins adapt to the data's (channels, height, width). Conv models need at least 28x28 inputs, so the
dataset loader upsamples the 8x8 `digits` images to 28x28 for them (see `worker.engine.datasets`).
A name that is not built in is looked up among registered plugins (`prunescope.plugins`), never imported.
"""

from __future__ import annotations

import torch
from torch import nn

from prunescope import plugins
from prunescope.layernames import RESNET_DEPTHS
from worker.engine.networks.classic import build_classic
from worker.engine.networks.resnet import CifarResNet, resnet_cifar, wide_resnet
from worker.engine.networks.vgg import VGG, vgg16_bn

CLASSIC_MODELS = ("lenet300_100", "mlp", "lenet5", "small_cnn")
CIFAR_MODELS = (*RESNET_DEPTHS, "vgg16_bn", "wrn22_2")
#: Built-in conv models: `digits` is upsampled to 28x28 for them.
CONV_MODELS = ("lenet5", "small_cnn", *CIFAR_MODELS)

__all__ = ["CIFAR_MODELS", "CONV_MODELS", "VGG", "CifarResNet", "build_model"]


def build_model(model_cfg: dict, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build `model_cfg["name"]` for inputs of `input_shape` (C, H, W) and `num_classes` outputs."""
    name = model_cfg.get("name", "lenet300_100")
    multiplier = float(model_cfg.get("width_multiplier") or 1.0)
    if name in CLASSIC_MODELS:
        return build_classic(name, model_cfg, input_shape, num_classes)
    if name in RESNET_DEPTHS:
        return resnet_cifar(name, input_shape, num_classes, multiplier)
    if name == "vgg16_bn":
        return vgg16_bn(input_shape, num_classes, multiplier)
    if name == "wrn22_2":
        return wide_resnet(input_shape, num_classes, multiplier)
    plugin = plugins.model_plugin(name)
    if plugin is None:
        known = [*CLASSIC_MODELS, *CIFAR_MODELS, *sorted(plugins.REGISTRY.models)]
        raise ValueError(f"unknown model {name!r}; this worker knows {', '.join(known)} (a plugin another "
                         "worker offers: every worker on a queue must load the same PRUNESCOPE_PLUGINS)")
    model = plugin.build(tuple(input_shape), int(num_classes), **(model_cfg.get("params") or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model plugin {name!r} ({plugin.source}) returned {type(model).__name__}, not an nn.Module")
    probe_plugin_model(model, name, plugin.source, tuple(input_shape), int(num_classes))
    return model


def probe_plugin_model(model: nn.Module, name: str, source: str, input_shape: tuple[int, ...],
                       num_classes: int) -> None:
    """One forward of a zero sample, in eval mode and without gradients (no weight, statistic or random state
    changes): it creates the parameters of lazy modules (`nn.LazyLinear`: the pruner needs their shapes), and a
    forward that does not return (N, num_classes) logits is refused here, by name, not deep in the loss."""
    modes = [(module, module.training) for module in model.modules()]  # a plugin may keep some in eval mode
    first = next(iter(model.parameters()), None)
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, *input_shape, device=first.device if first is not None else "cpu"))
    except Exception as exc:
        raise ValueError(f"model plugin {name!r} ({source}) fails on one input of shape {list(input_shape)}: "
                         f"{type(exc).__name__}: {exc}") from exc
    finally:
        for module, training in modes:
            module.training = training
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (1, num_classes):
        got = f"a tensor of shape {list(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"model plugin {name!r} ({source}): forward must return logits of shape (N, {num_classes}); "
                         f"for one input it returned {got}")
