"""One prunable weight tensor and its mask: which weights are kept, and the churn since the last report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from prunescope.layernames import selected

# Linear and every convolution (1d/2d/3d, transposed, grouped): a weight tensor whose first dimension is its rows.
# A transposed convolution's rows are its *input* channels, so neuron granularity refuses it (take_layers).
PRUNABLE_MODULES = (nn.Linear, _ConvNd)
Prunable = nn.Linear | _ConvNd


class PrunerHook:
    """A hook a Pruner (or its criterion) puts on a module or the optimizer: calls `target(*args)`.

    A plain closure would stop `torch.save(model)` (a local function does not pickle) and would follow a
    `copy.deepcopy(model)` (an EMA or best-model copy), so that running the copy swapped the *original*
    parameters. Pickled or deep-copied, this hook is inert: the copy has no Pruner (it may get its own).
    """

    __slots__ = ("target",)

    def __init__(self, target: Callable[..., Any] | None) -> None:
        self.target = target

    def __call__(self, *args: Any) -> Any:
        return None if self.target is None else self.target(*args)

    def __reduce__(self) -> tuple[type[PrunerHook], tuple[None]]:
        return PrunerHook, (None,)

    def __deepcopy__(self, memo: dict[int, Any]) -> PrunerHook:
        return PrunerHook(None)


def prunable_weights(model: nn.Module, include: list[str] | None = None,
                     exclude: list[str] | None = None) -> list[tuple[str, Prunable]]:
    """(parameter name, module) of every Linear/Conv weight whose name matches the include/exclude globs."""
    out: list[tuple[str, Prunable]] = []
    for module_name, module in model.named_modules():
        # A weight computed by a parametrization (weight_norm, spectral_norm) is no Parameter of the module: masking
        # the computed tensor would prune nothing (see `dense_weights`). One torch.nn.utils.prune holds stays, for
        # take_layers to refuse with the fix.
        if isinstance(module, PRUNABLE_MODULES) and (module._parameters.get("weight") is not None
                                                     or "weight_orig" in module._parameters):
            name = f"{module_name}.weight" if module_name else "weight"
            if selected(name, include, exclude):
                out.append((name, module))
    return out


def dense_weights(model: nn.Module, pruned: set[int], include: list[str] | None = None,
                  exclude: list[str] | None = None) -> list[str]:
    """Weight matrices the Pruner leaves dense that a user may expect pruned (named, with why): embeddings,
    recurrent and attention weights held as raw parameters, and Linear/Conv weights under a parametrization."""
    found: list[str] = []
    seen = set(pruned)
    for module_name, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # a parametrized weight's original: named through its module below
        prefix = f"{module_name}." if module_name else ""
        kind = type(module).__name__
        if isinstance(module, PRUNABLE_MODULES) and module._parameters.get("weight") is None:
            if selected(f"{prefix}weight", include, exclude) and "weight_orig" not in module._parameters:
                found.append(f"{prefix}weight ({kind} under a parametrization such as weight_norm: "
                             "torch.nn.utils.parametrize.remove_parametrizations() it to prune it)")
            continue
        for param_name, param in module._parameters.items():
            name = f"{prefix}{param_name}"
            if (param is None or isinstance(param, nn.parameter.UninitializedParameter) or param.dim() < 2
                    or id(param) in seen
                    or (isinstance(module, PRUNABLE_MODULES) and param_name == "weight")):
                continue
            seen.add(id(param))
            if selected(name, include, exclude):
                found.append(f"{name} ({kind})")
    return found


@dataclass
class PrunedLayer:
    """A prunable weight, its mask and the mask's bookkeeping (criterion and recovery keep their own state)."""

    name: str
    module: nn.Module
    weight: nn.Parameter
    bias: nn.Parameter | None  # zeroed with its row under neuron granularity (a disabled neuron emits 0)
    mask: torch.Tensor  # bool, weight-shaped; also registered on the module as buffer `weight_mask`
    row_pruning: bool  # False for the output layer under neuron granularity: its rows are the classes
    keep: torch.Tensor = field(init=False)  # float copy of mask: multiplying by it is the fast path
    bias_keep: torch.Tensor | None = field(init=False)
    pruned: int = 0  # weights that left the mask since the last report
    regrown: int = 0  # weights that (re)entered it
    threshold: float | None = None  # the score cut of the last mask update

    def __post_init__(self) -> None:
        self.refresh_keep()

    def refresh_keep(self) -> None:
        self.keep = self.mask.to(self.weight.dtype)
        self.bias_keep = None
        if self.bias is not None and self.row_pruning and self.mask.dim() > 0:
            self.bias_keep = self.mask.reshape(self.mask.shape[0], -1).any(dim=1).to(self.weight.dtype)

    @property
    def rows(self) -> int:
        return int(self.weight.shape[0])

    @property
    def row_size(self) -> int:
        return int(self.weight[0].numel())

    def unit_mask(self, neuron: bool) -> torch.Tensor:
        """The mask over the units a granularity prunes: weights, or rows (neurons/filters)."""
        return self.mask.reshape(self.rows, -1).any(dim=1) if neuron else self.mask

    def expand(self, unit_keep: torch.Tensor, neuron: bool) -> torch.Tensor:
        """A unit mask back to the weight's shape."""
        if not neuron:
            return unit_keep
        return unit_keep.view(-1, *([1] * (self.weight.dim() - 1))).expand_as(self.mask)


class DenseCopy:
    """splice/feedback: the parameters hold the dense weights, which keep learning; around forward and backward
    the masked weights are swapped in (a `param.data` swap with a spare buffer, one multiply per layer), so the
    gradient is taken at the pruned model and applied to the dense one."""

    def __init__(self, layers: list[PrunedLayer]) -> None:
        self.layers = layers
        self.swapped = False  # the parameters hold the masked weights right now
        self.spares: list[tuple[torch.Tensor, torch.Tensor | None]] = [
            (torch.empty_like(layer.weight.data),
             torch.empty_like(layer.bias.data) if layer.bias is not None and layer.row_pruning else None)
            for layer in layers]

    def swap_masked_in(self) -> None:
        with torch.no_grad():
            for i, (layer, (spare, spare_bias)) in enumerate(zip(self.layers, self.spares, strict=True)):
                torch.mul(layer.weight.data, layer.keep, out=spare)
                layer.weight.data, spare = spare, layer.weight.data
                if spare_bias is not None and layer.bias is not None and layer.bias_keep is not None:
                    torch.mul(layer.bias.data, layer.bias_keep, out=spare_bias)
                    layer.bias.data, spare_bias = spare_bias, layer.bias.data
                self.spares[i] = (spare, spare_bias)
        self.swapped = True

    def swap_dense_back(self) -> None:
        for i, (layer, (spare, spare_bias)) in enumerate(zip(self.layers, self.spares, strict=True)):
            layer.weight.data, spare = spare, layer.weight.data
            if spare_bias is not None and layer.bias is not None:
                layer.bias.data, spare_bias = spare_bias, layer.bias.data
            self.spares[i] = (spare, spare_bias)
        self.swapped = False
