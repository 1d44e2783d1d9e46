"""One prunable weight tensor and its mask: which weights are kept, and the churn since the last report."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch
from torch import nn

PRUNABLE_MODULES = (nn.Linear, nn.Conv2d)


def prunable_weights(model: nn.Module, include: list[str] | None = None,
                     exclude: list[str] | None = None) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """(parameter name, module) of every Linear/Conv weight whose name matches the include/exclude globs."""
    include = include if include is not None else ["*"]
    exclude = exclude or []
    out: list[tuple[str, nn.Linear | nn.Conv2d]] = []
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_MODULES):
            name = f"{module_name}.weight" if module_name else "weight"
            if any(fnmatch.fnmatchcase(name, g) for g in include) and not any(
                    fnmatch.fnmatchcase(name, g) for g in exclude):
                out.append((name, module))
    return out


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
