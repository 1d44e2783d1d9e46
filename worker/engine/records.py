"""Building the contract's epoch record and run summary from what the training loop measured."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunescope.contract import EpochRecord, LayerStats
from prunescope.contract.records import MAX_HISTOGRAM_BINS, WeightHistogram
from worker.engine.pruning import Pruner, prunable_weights


@dataclass(frozen=True)
class EpochMeasures:
    """The scalars one epoch produced, before they become a record."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    epoch_seconds: float
    train_seconds: float
    samples: int


def dense_layer_stats(model: nn.Module) -> tuple[list[LayerStats], dict[str, np.ndarray]]:
    """Layer stats of an unpruned model: sparsity from actual zeros, all-True masks."""
    layers, masks = [], {}
    for name, module in prunable_weights(model):
        weight = module.weight.detach()
        total = weight.numel()
        layers.append(LayerStats(name=name, shape=list(weight.shape),
                                 sparsity=1 - int(torch.count_nonzero(weight)) / total))
        masks[name] = np.ones(tuple(weight.shape), dtype=bool)
    return layers, masks


# Bin widths in decades of |w|, finest first: the finest that covers a layer's range in MAX_HISTOGRAM_BINS bins.
BIN_DECADES = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0)


@torch.no_grad()
def weight_histogram(weight: torch.Tensor, mask: torch.Tensor | None = None) -> WeightHistogram | None:
    """Histogram of a layer's non-zero |w| on a log scale; `kept` counts the ones `mask` keeps (None: no mask).

    Edges lie on one fixed grid (multiples of the bin width in log10 |w|), so two epochs or two layers with
    the same bin width share their bins and read side by side, while each histogram still spans exactly
    its own values. None when the layer has no non-zero finite weight.
    """
    flat = weight.detach().reshape(-1).float()
    if mask is not None:
        # The mask rides on the sign (|w| drops it anyway): one selection serves counts and kept alike.
        flat = torch.copysign(flat, mask.reshape(-1).to(flat.dtype) - 0.5)
    values = flat[flat != 0]
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        values = values[finite]
    if values.numel() == 0:
        return None
    logs = torch.log10(values.abs())
    if logs.numel() >= 2**24:
        logs = logs.double()  # histc counts in the input's dtype: float32 stops counting exactly at 2^24
    lo, hi = (float(v) for v in torch.aminmax(logs))
    for width in BIN_DECADES:
        first, last = math.floor(lo / width), math.floor(hi / width)
        if last - first + 1 <= MAX_HISTOGRAM_BINS:
            break
    bins, low = last - first + 1, first * width
    span = bins * width
    if mask is None:
        counts, kept = torch.histc(logs, bins=bins, min=low, max=low + span).long().tolist(), None
    else:
        # Kept values move up by one span: one histc counts pruned ([0, bins)) and kept ([bins, 2·bins)).
        logs += (values > 0).to(logs.dtype) * span
        split = torch.histc(logs, bins=2 * bins, min=low, max=low + 2 * span).long().view(2, bins)
        counts, kept = split.sum(dim=0).tolist(), split[1].tolist()
    # 7 significant digits (float32's): half the JSON of full doubles in every stored epoch.
    edges = [float(f"{10.0 ** ((first + i) * width):.7g}") for i in range(bins + 1)]
    return WeightHistogram(edges=edges, counts=counts, kept=kept)


def with_histograms(layers: list[LayerStats], model: nn.Module, pruner: Pruner | None) -> list[LayerStats]:
    """`layers` with their weight histograms. Call with the dense weights in place (outside `masked_weights()`):
    for splice/feedback the histogram then shows the dense values and `kept` which of them the mask keeps."""
    sources: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
    if pruner is not None:
        sources = {layer.name: (layer.weight, layer.mask) for layer in pruner.layers}
    else:
        sources = {name: (module.weight, None) for name, module in prunable_weights(model)}
    return [stats.model_copy(update={"histogram": weight_histogram(*sources[stats.name])})
            if stats.name in sources else stats for stats in layers]


def finite_or_none(value: float) -> float | None:
    """Records refuse NaN/inf: a diverged value is recorded as missing."""
    return value if math.isfinite(value) else None


def build_epoch_record(measures: EpochMeasures, model: nn.Module,
                       pruner: Pruner | None) -> tuple[EpochRecord, dict[str, np.ndarray]]:
    """The epoch's record (metrics, per-layer stats and weight histograms) and its mask snapshots; resets the
    pruner's churn."""
    layers, masks = pruner.epoch_stats() if pruner is not None else dense_layer_stats(model)
    layers = with_histograms(layers, model, pruner)
    total = sum(math.prod(layer.shape) for layer in layers)
    nonzero = sum(round((1 - layer.sparsity) * math.prod(layer.shape)) for layer in layers)
    record = EpochRecord(
        epoch=measures.epoch, train_loss=finite_or_none(measures.train_loss), train_acc=measures.train_acc,
        test_loss=finite_or_none(measures.test_loss), test_acc=measures.test_acc, lr=measures.lr,
        sparsity=1 - nonzero / total if total else 0.0, nonzero=nonzero, total=total,
        target_sparsity=pruner.target_at(pruner.step) if pruner is not None else None,
        epoch_seconds=measures.epoch_seconds, samples_per_s=measures.samples / max(measures.train_seconds, 1e-9),
        layers=layers,
    )
    return record, masks
