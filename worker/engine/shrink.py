"""Channel-pruned conv nets (ResNet, WRN, VGG) made physically smaller, saved as TorchScript (loads without prunescope).

A filter whose weights are all zero (neuron granularity) outputs 0; after its batch norm and ReLU that is a
per-channel constant c. Removing the channel therefore changes nothing if the next layer adds what c
contributed: a Linear gets W[:, dead] @ c folded into its bias; a padded conv gets the exact map
conv(c, W[:, dead]) (constant inside, different at the borders) as a fixed offset. Residual-stream channels
are kept (zeroed), as in Li et al. 2017: only block-internal channels and VGG's channels are removed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.networks.resnet import Chain


class OffsetConv2d(nn.Module):
    """A conv plus a fixed (C_out, H, W) map: what the removed constant input channels contributed."""

    def __init__(self, conv: nn.Conv2d, offset: torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.offset


def _get(model: nn.Module, path: str) -> Any:
    return model.get_submodule(path)


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _consumer_input_sizes(model: nn.Module, consumers: list[str], input_shape: tuple[int, ...]) -> dict[str, Any]:
    sizes: dict[str, Any] = {}
    handles = [_get(model, name).register_forward_hook(
        lambda module, inputs, output, name=name: sizes.__setitem__(name, tuple(inputs[0].shape[2:])))
        for name in consumers]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def shrink_conv_model(model: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module:
    """An eval-mode copy of `model` (with `channel_chains()`) whose dead channels are removed; same outputs."""
    if not hasattr(model, "channel_chains"):
        raise ValueError(f"{type(model).__name__} has no channel_chains(): use shrink_model for Sequential nets")
    small = copy.deepcopy(model).eval()
    chains: list[Chain] = small.channel_chains()  # type: ignore[operator]
    sizes = _consumer_input_sizes(small, [consumer for _, _, consumer in chains], input_shape)
    with torch.no_grad():
        # Last chain first: a consumer is then narrowed (inputs) after it was shrunk as a producer (outputs),
        # so every producer is still a plain conv whose dead filters emit exactly 0.
        for producer_name, norm_name, consumer_name in reversed(chains):
            _remove_dead_channels(small, producer_name, norm_name, consumer_name, sizes[consumer_name])
    return small


def _remove_dead_channels(model: nn.Module, producer_name: str, norm_name: str, consumer_name: str,
                          consumer_size: tuple[int, ...]) -> None:
    producer: nn.Conv2d = _get(model, producer_name)
    norm: nn.BatchNorm2d = _get(model, norm_name)
    consumer: nn.Module = _get(model, consumer_name)
    weight = producer.weight.detach()
    alive = weight.reshape(weight.shape[0], -1).ne(0).any(dim=1)
    if producer.bias is not None:
        alive |= producer.bias.detach().ne(0)
    if bool(alive.all()):
        return
    if not bool(alive.any()):
        alive[0] = True  # keep one channel so every layer still exists
    dead = ~alive
    # What each dead channel emits after batch norm and ReLU (eval mode: a constant per channel).
    emitted: torch.Tensor = F.relu(norm(torch.zeros(1, norm.num_features, 1, 1)))
    constant = emitted[0, :, 0, 0][dead]
    new_producer = _conv_like(producer, producer.in_channels, int(alive.sum()))
    new_producer.weight.copy_(weight[alive])
    if producer.bias is not None and new_producer.bias is not None:
        new_producer.bias.copy_(producer.bias.detach()[alive])
    new_norm = nn.BatchNorm2d(int(alive.sum()), eps=norm.eps, momentum=norm.momentum)
    for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        value = getattr(norm, attr).detach()
        getattr(new_norm, attr).copy_(value if value.dim() == 0 else value[alive])
    _set(model, producer_name, new_producer)
    _set(model, norm_name, new_norm.eval())
    _set(model, consumer_name, _narrowed_consumer(consumer, alive, constant, consumer_size))


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """A conv with `conv`'s geometry and other channel counts (weights copied in by the caller)."""
    return nn.Conv2d(in_channels, out_channels, conv.kernel_size, stride=conv.stride,  # type: ignore[arg-type]
                     padding=conv.padding, dilation=conv.dilation, groups=conv.groups,  # type: ignore[arg-type]
                     bias=conv.bias is not None)


def _narrowed_consumer(consumer: nn.Module, alive: torch.Tensor, constant: torch.Tensor,
                       size: tuple[int, ...]) -> nn.Module:
    dead = ~alive
    if isinstance(consumer, nn.Linear):
        # Global pooling keeps a constant channel constant: its share is a fixed addition to the bias.
        new = nn.Linear(int(alive.sum()), consumer.out_features)
        new.weight.copy_(consumer.weight.detach()[:, alive])
        bias = consumer.bias.detach() if consumer.bias is not None else torch.zeros(consumer.out_features)
        new.bias.copy_(bias + consumer.weight.detach()[:, dead] @ constant)
        return new
    if not isinstance(consumer, nn.Conv2d) or consumer.groups != 1:
        raise ValueError(f"cannot narrow the inputs of {type(consumer).__name__}")
    new_conv = _conv_like(consumer, int(alive.sum()), consumer.out_channels)
    new_conv.weight.copy_(consumer.weight.detach()[:, alive])
    if consumer.bias is not None and new_conv.bias is not None:
        new_conv.bias.copy_(consumer.bias.detach())
    plane = constant.view(1, -1, 1, 1).expand(1, int(dead.sum()), *size)
    offset = F.conv2d(plane, consumer.weight.detach()[:, dead], stride=consumer.stride, padding=consumer.padding,
                      dilation=consumer.dilation)[0]
    return OffsetConv2d(new_conv, offset)


def export_torchscript(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> Path:
    """Trace `model` (eval mode) at `input_shape` and save it: `torch.jit.load(path)` needs only torch."""
    model = model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(1, *input_shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(traced, str(tmp))
    tmp.replace(path)
    return path
