"""Per-layer weight-magnitude histograms in epoch records: counts, kept, edges and where the threshold falls."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from prunescope.contract.records import MAX_HISTOGRAM_BINS, WeightHistogram
from tests.engine.conftest import Epochs
from worker.engine.networks import build_model
from worker.engine.pruning import Pruner
from worker.engine.records import BIN_DECADES, EpochMeasures, build_epoch_record, weight_histogram
from worker.engine.training import run_training

MEASURES = EpochMeasures(epoch=1, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=0.5, lr=0.1,
                         epoch_seconds=1.0, train_seconds=1.0, samples=10)


def _check_shape(histogram: WeightHistogram) -> None:
    assert len(histogram.edges) == len(histogram.counts) + 1 <= MAX_HISTOGRAM_BINS + 1
    logs = np.log10(histogram.edges)
    steps = np.diff(logs)
    width = min(BIN_DECADES, key=lambda w: abs(w - steps[0]))
    assert np.allclose(steps, width, rtol=1e-5)  # log-spaced by one of the fixed widths, increasing
    assert math.isclose(logs[0] / width, round(logs[0] / width), abs_tol=1e-4)  # on the fixed grid


def test_counts_cover_exactly_the_nonzero_weights_and_kept_the_masked_ones() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(200, 300, generator=gen) * 0.05
    weight[:, :50] = 0  # zeros are left out
    mask = torch.rand(200, 300, generator=gen) > 0.7
    histogram = weight_histogram(weight, mask)
    assert histogram is not None and histogram.kept is not None
    _check_shape(histogram)
    assert sum(histogram.counts) == int(torch.count_nonzero(weight))
    assert all(k <= c for k, c in zip(histogram.kept, histogram.counts, strict=True))
    assert sum(histogram.kept) == int(torch.count_nonzero(weight[mask]))
    magnitudes = weight[weight != 0].abs().numpy()
    assert histogram.edges[0] <= magnitudes.min() and magnitudes.max() < histogram.edges[-1]
    reference, _ = np.histogram(magnitudes, bins=histogram.edges)
    # float32 log10 may put a value lying on an edge into the neighbouring bin; nothing else may differ.
    assert np.abs(reference - np.array(histogram.counts)).sum() <= 4


def test_a_wide_range_widens_the_bins_but_never_exceeds_the_contract() -> None:
    weight = torch.tensor([1e-30, 1e-12, 3e-3, 0.5, 20.0, float("inf"), float("nan"), 0.0])
    histogram = weight_histogram(weight)
    assert histogram is not None and histogram.kept is None
    _check_shape(histogram)
    assert sum(histogram.counts) == 5  # non-finite and zero values are left out
    assert histogram.edges[0] <= 1e-30 and histogram.edges[-1] > 20.0


def test_a_single_value_gets_one_bin_around_it_and_no_value_none() -> None:
    histogram = weight_histogram(torch.full((4, 4), -0.3))
    assert histogram is not None and histogram.counts == [16]
    assert histogram.edges[0] <= 0.3 < histogram.edges[1]
    assert weight_histogram(torch.zeros(3, 3)) is None


def test_the_threshold_of_a_magnitude_run_lies_between_pruned_and_kept_bins() -> None:
    # DPF keeps the dense weights: right after a magnitude update the pruned ones are all below θ, the kept
    # ones at or above it, so pruned bins end where kept bins start (they may share θ's bin).
    torch.manual_seed(0)
    model = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, optimizer, {"target_sparsity": 0.9, "schedule": {"kind": "one_shot", "start_epoch": 0},
                                       "recovery": {"kind": "feedback"}}, epochs=1, steps_per_epoch=1, attach=False)
    pruner.start()
    record, masks = build_epoch_record(MEASURES, model, pruner)
    for layer in record.layers:
        histogram, theta = layer.histogram, layer.threshold
        assert histogram is not None and histogram.kept is not None and theta is not None
        _check_shape(histogram)
        pruned = [c - k for c, k in zip(histogram.counts, histogram.kept, strict=True)]
        pruned_bins = [i for i, n in enumerate(pruned) if n]
        kept_bins = [i for i, n in enumerate(histogram.kept) if n]
        assert max(pruned_bins) <= min(kept_bins)
        assert histogram.edges[max(pruned_bins)] <= theta <= histogram.edges[min(kept_bins) + 1]
        assert sum(histogram.kept) == int(masks[layer.name].sum())
        assert sum(histogram.counts) == masks[layer.name].size  # dense values: every weight is counted


def test_every_epoch_of_a_run_records_a_histogram_per_layer(tmp_path: Path,
                                                            make_config: Callable[..., dict]) -> None:
    records = Epochs()
    pruning = {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 2}}
    run_training(make_config(pruning), data_dir=tmp_path, on_epoch=records)
    for record in records:
        for layer in record["layers"]:
            histogram = WeightHistogram.model_validate(layer["histogram"])
            # Masked weights are exactly 0: the histogram holds the kept weights, all of which the mask keeps.
            assert histogram.kept == histogram.counts
            assert sum(histogram.counts) == int(record["masks"][layer["name"]].sum())
    dense = Epochs()
    run_training(make_config(None, training={"epochs": 1}), data_dir=tmp_path, on_epoch=dense)
    for layer in dense[0]["layers"]:
        assert layer["histogram"]["kept"] is None  # no mask, nothing to split
        assert sum(layer["histogram"]["counts"]) == math.prod(layer["shape"])


@pytest.mark.parametrize("recovery", ["none", "splice"])
def test_histograms_do_not_touch_the_weights_or_masks(recovery: str) -> None:
    torch.manual_seed(0)
    model = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
    pruner = Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1),
                    {"target_sparsity": 0.5, "schedule": {"kind": "one_shot", "start_epoch": 0},
                     "recovery": {"kind": recovery}}, epochs=1, steps_per_epoch=1, attach=False)
    pruner.start()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = pruner.masks()
    build_epoch_record(MEASURES, model, pruner)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(masks[k], v) for k, v in pruner.masks().items())
