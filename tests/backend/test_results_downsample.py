"""The min/max-preserving downsampler: long series come back small and keep every spike."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.results.downsample import downsample, minmax_indices


def test_a_million_points_come_back_small_and_keep_their_spikes() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = np.sin(np.linspace(0, 20, n)) + rng.normal(0, 0.01, n)
    spikes = {123_457: 50.0, 500_001: -40.0, 999_998: 30.0, 3: -25.0}
    for index, value in spikes.items():
        y[index] = value
    x = np.arange(n)
    started = time.perf_counter()
    xs, ys = downsample(x, y, 1000)
    elapsed = time.perf_counter() - started
    assert len(xs) <= 1000
    assert len(xs) >= 900  # it uses its budget, not a handful of points
    for index, value in spikes.items():
        assert index in xs.astype(int), index
        assert value in ys
    assert ys.max() == y.max() and ys.min() == y.min()
    assert np.all(np.diff(xs) > 0)  # still a function of x, in order
    assert elapsed < 1.0


def test_every_buckets_extremes_are_kept() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=10_007)  # not a multiple of the bucket size
    keep = minmax_indices(y, 100)
    assert len(keep) <= 100
    kept = set(keep.tolist())
    size = -(-len(y) // 49)  # (100 - 2: the first and last points) // 2 buckets
    for start in range(0, len(y), size):
        bucket = y[start:start + size]
        assert start + int(bucket.argmax()) in kept
        assert start + int(bucket.argmin()) in kept


def test_short_series_are_returned_whole() -> None:
    xs, ys = downsample([1, 2, 3], [0.5, 0.25, 0.125], 1000)
    assert xs.tolist() == [1, 2, 3]
    assert ys.tolist() == [0.5, 0.25, 0.125]


def test_missing_values_are_dropped_and_flat_series_do_not_repeat_points() -> None:
    xs, ys = downsample([1, 2, 3, 4], [1.0, np.nan, 3.0, np.nan], 10)
    assert xs.tolist() == [1, 3] and ys.tolist() == [1.0, 3.0]
    keep = minmax_indices(np.zeros(1000), 10)
    assert len(keep) == len(set(keep.tolist())) <= 10


def test_max_points_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        minmax_indices(np.zeros(10), 1)


def test_a_downsampled_series_keeps_its_first_and_newest_points() -> None:
    # 300 epochs of a falling loss at 50 points: epoch 300 was neither its bucket's min nor max (it ties the
    # bucket's values only by chance), so a live chart lost its newest epoch.
    rng = np.random.default_rng(0)
    y = np.linspace(2.0, 0.1, 300) + rng.normal(0, 0.05, 300)
    for max_points in (4, 7, 50, 101):
        keep = minmax_indices(y, max_points)
        assert keep[0] == 0 and keep[-1] == 299 and len(keep) <= max_points
        assert np.all(np.diff(keep) > 0)
        assert y.argmin() in keep and y.argmax() in keep
