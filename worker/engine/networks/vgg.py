"""VGG-16 with batch norm for CIFAR (Simonyan & Zisserman 2015; the CIFAR form of Li et al. 2017 and Liu et al. 2017).

Thirteen 3x3 conv-BN-ReLU layers in five stages, a 2x2 max-pool after each, global average pooling and one
linear classifier; parameter names `conv1.weight` … `conv13.weight`, `fc.weight`.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from worker.engine.networks.resnet import Chain, scaled

STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(nn.Sequential):
    """A named Sequential: every conv's output channels can be removed outright (`worker.engine.shrink`)."""

    def channel_chains(self) -> list[Chain]:
        convs = [name for name, module in self.named_children() if isinstance(module, nn.Conv2d)]
        consumers = [*convs[1:], "fc"]
        return [(conv, conv.replace("conv", "bn"), consumer) for conv, consumer in zip(convs, consumers, strict=True)]


def vgg16_bn(input_shape: tuple[int, int, int], num_classes: int, multiplier: float = 1.0) -> VGG:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    previous, index = input_shape[0], 0
    for stage, widths in enumerate(STAGES, start=1):
        for width in widths:
            index += 1
            channels = scaled(width, multiplier)
            layers[f"conv{index}"] = nn.Conv2d(previous, channels, 3, padding=1, bias=False)
            layers[f"bn{index}"] = nn.BatchNorm2d(channels)
            layers[f"relu{index}"] = nn.ReLU()
            previous = channels
        # ceil_mode: 28x28 inputs (MNIST, upsampled digits) survive five halvings (28-14-7-4-2-1).
        layers[f"pool{stage}"] = nn.MaxPool2d(2, ceil_mode=True)
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(previous, num_classes)
    model = VGG(layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model
