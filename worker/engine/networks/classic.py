"""The small classifiers (LeNet-300-100, MLP, LeNet-5, a small CNN) as named `nn.Sequential`s (`fc1.weight`)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from prunescope.layernames import DEFAULT_MLP_HIDDEN


def mlp(widths: list[int], in_features: int, num_classes: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    previous = in_features
    for index, width in enumerate(widths, start=1):
        layers[f"fc{index}"] = nn.Linear(previous, width)
        layers[f"relu{index}"] = nn.ReLU()
        previous = width
    layers[f"fc{len(widths) + 1}"] = nn.Linear(previous, num_classes)
    return nn.Sequential(layers)


def _flat_features(features: nn.Sequential, input_shape: tuple[int, int, int]) -> int:
    # A dry run is the simplest way to know the flattened size for any input size.
    with torch.no_grad():
        out = features(torch.zeros(1, *input_shape))
    return int(out.numel())


def _conv_net(conv: OrderedDict[str, nn.Module], fc: list[tuple[str, int]], input_shape: tuple[int, int, int],
              num_classes: int) -> nn.Sequential:
    features = nn.Sequential(conv)
    flat = _flat_features(features, input_shape)
    layers = OrderedDict(conv)
    layers["flatten"] = nn.Flatten()
    previous = flat
    for name, width in fc:
        layers[name] = nn.Linear(previous, width)
        layers[f"relu_{name}"] = nn.ReLU()
        previous = width
    layers[f"fc{len(fc) + 1}"] = nn.Linear(previous, num_classes)
    return nn.Sequential(layers)


def build_classic(name: str, model_cfg: dict, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    in_features = channels * height * width
    if name == "lenet300_100":
        return mlp([300, 100], in_features, num_classes)
    if name == "mlp":
        hidden = model_cfg.get("hidden")  # [] is a linear classifier; only an unset list takes the default
        hidden = DEFAULT_MLP_HIDDEN if hidden is None else hidden
        return mlp(list(hidden), in_features, num_classes)
    if min(height, width) < 28:
        raise ValueError(f"model {name!r} needs images of at least 28x28, got {height}x{width}")
    if name == "lenet5":
        # Caffe's LeNet-5 widths (20, 50 filters; 500 hidden): 431k weights on 28x28 inputs.
        conv: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=nn.Conv2d(channels, 20, 5), relu_conv1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(20, 50, 5), relu_conv2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        )
        return _conv_net(conv, [("fc1", 500)], input_shape, num_classes)
    if name == "small_cnn":
        # No batch norm on purpose: a disabled filter then outputs exactly 0, so neuron pruning can
        # physically remove it (worker.engine.export.shrink_model) without changing the outputs.
        conv = OrderedDict(
            conv1=nn.Conv2d(channels, 32, 3, padding=1), relu_conv1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(32, 64, 3, padding=1), relu_conv2=nn.ReLU(), pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(64, 128, 3, padding=1), relu_conv3=nn.ReLU(), pool3=nn.MaxPool2d(2),
        )
        return _conv_net(conv, [("fc1", 256)], input_shape, num_classes)
    raise ValueError(f"{name!r} is not a classic model")
