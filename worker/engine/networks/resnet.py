"""CIFAR ResNets (He et al. 2016: ResNet-20/32/56, option-A shortcuts) and Wide ResNet (Zagoruyko & Komodakis 2016).

Parameter names follow torchvision's (`layer2.0.conv1.weight`, `fc.weight`) and `prunescope.layernames`.
Each block names its *inner* channel chain (conv → batch norm → ReLU → conv): the channels that neuron
pruning can physically remove (`worker.engine.shrink`); the residual stream's channels stay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.layernames import RESNET_DEPTHS, WRN_DEPTH, WRN_WIDEN, resnet_blocks, wrn_blocks

Chain = tuple[str, str, str]  # (producer conv, its batch norm, consumer conv/linear), ReLU in between


def scaled(channels: int, multiplier: float) -> int:
    return max(1, round(channels * multiplier))


def _init(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ShortcutA(nn.Module):
    """Option A of He et al. 2016 (their CIFAR models): subsample, then zero-pad the new channels. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.front = (out_channels - in_channels) // 2
        self.back = out_channels - in_channels - self.front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.front, self.back))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    inner: Chain = ("conv1", "bn1", "conv2")

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (ShortcutA(in_channels, out_channels, stride)
                                    if stride != 1 or in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class WideBlock(nn.Module):
    """Pre-activation BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus the shortcut (1x1 projection in a group's first block)."""

    inner: Chain = ("conv1", "bn2", "conv2")

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, projection: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut: nn.Conv2d | None = (nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                                           if projection else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        # As in the authors' code: the projection sees the pre-activated input, the identity the raw one.
        return out + (self.shortcut(pre) if self.shortcut is not None else x)


class CifarResNet(nn.Module):
    """Stem conv, three stages of blocks (strides 1, 2, 2), global average pooling, a linear classifier."""

    def __init__(self, stages: list[nn.Sequential], stem: nn.Conv2d, stem_bn: nn.BatchNorm2d | None,
                 head_bn: nn.BatchNorm2d | None, features: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = stem
        self.bn1 = stem_bn
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final = head_bn
        self.fc = nn.Linear(features, num_classes)  # registered last: the output layer keeps its rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = F.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.bn_final is not None:
            x = F.relu(self.bn_final(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def channel_chains(self) -> list[Chain]:
        """(conv, batch norm, next layer) triples whose pruned channels can be removed outright."""
        chains = []
        for stage in ("layer1", "layer2", "layer3"):
            for index, block in enumerate(getattr(self, stage)):
                producer, norm, consumer = block.inner
                prefix = f"{stage}.{index}."
                chains.append((prefix + producer, prefix + norm, prefix + consumer))
        return chains


def resnet_cifar(name: str, input_shape: tuple[int, int, int], num_classes: int,
                 multiplier: float = 1.0) -> CifarResNet:
    """ResNet-20/32/56 of He et al. 2016, Sec. 4.2: 16/32/64 channels, 6n+2 layers, option-A shortcuts."""
    blocks = resnet_blocks(RESNET_DEPTHS[name])
    widths = [scaled(c, multiplier) for c in (16, 32, 64)]
    stages, previous = [], widths[0]
    for stage, width in enumerate(widths):
        layers = []
        for index in range(blocks):
            layers.append(BasicBlock(previous, width, 2 if stage > 0 and index == 0 else 1))
            previous = width
        stages.append(nn.Sequential(*layers))
    stem = nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False)
    model = CifarResNet(stages, stem, nn.BatchNorm2d(widths[0]), None, widths[-1], num_classes)
    _init(model)
    return model


def wide_resnet(input_shape: tuple[int, int, int], num_classes: int, multiplier: float = 1.0,
                depth: int = WRN_DEPTH, widen: int = WRN_WIDEN) -> CifarResNet:
    """WRN-d-k: a 16-channel stem, groups of 16k/32k/64k channels, (d-4)/6 pre-activation blocks each."""
    blocks = wrn_blocks(depth)
    stem_width = scaled(16, multiplier)
    widths = [scaled(c * widen, multiplier) for c in (16, 32, 64)]
    stages, previous = [], stem_width
    for group, width in enumerate(widths):
        layers = []
        for index in range(blocks):
            layers.append(WideBlock(previous, width, 2 if group > 0 and index == 0 else 1, projection=index == 0))
            previous = width
        stages.append(nn.Sequential(*layers))
    stem = nn.Conv2d(input_shape[0], stem_width, 3, padding=1, bias=False)
    model = CifarResNet(stages, stem, None, nn.BatchNorm2d(widths[-1]), widths[-1], num_classes)
    _init(model)
    return model
