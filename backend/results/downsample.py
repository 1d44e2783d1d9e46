"""Min/max-preserving decimation: a long series shrinks to a few points per pixel and keeps its spikes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def minmax_indices(y: ArrayLike, max_points: int) -> NDArray[np.intp]:
    """Indices (ascending) of at most `max_points` points: each bucket's minimum and maximum, and (from 4 points
    on) the series' first and last points.

    Like M4: a line drawn through them covers the same vertical range per bucket as the full series, so a single
    spike survives however long the series is, and a live chart keeps its newest point (it lost the newest epoch
    whenever that was neither its bucket's minimum nor its maximum).
    """
    values = np.asarray(y, dtype=np.float64)
    n = values.shape[0]
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if n <= max_points:
        return np.arange(n, dtype=np.intp)
    if max_points < 4:
        return _bucket_extremes(values, max_points)
    return np.union1d(_bucket_extremes(values, max_points - 2), [0, n - 1]).astype(np.intp)


def _bucket_extremes(values: NDArray[np.float64], max_points: int) -> NDArray[np.intp]:
    n = values.shape[0]
    size = -(-n // (max_points // 2))  # points per bucket, rounded up
    buckets = -(-n // size)  # ≤ max_points // 2, and the last bucket is not empty
    # Pad with the last value: within its bucket argmin/argmax return the first tie, an index < n.
    padded = np.pad(values, (0, buckets * size - n), mode="edge").reshape(buckets, size)
    offsets = np.arange(buckets, dtype=np.intp) * size
    lows = padded.argmin(axis=1) + offsets
    highs = padded.argmax(axis=1) + offsets
    first, second = np.minimum(lows, highs), np.maximum(lows, highs)
    pairs = np.stack([first, second], axis=1).ravel()
    keep = np.ones(pairs.shape[0], dtype=bool)
    keep[1::2] = second != first  # a flat bucket contributes one point, not the same one twice
    return pairs[keep]


def downsample(x: ArrayLike, y: ArrayLike, max_points: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The points of (x, y) that `minmax_indices` keeps; NaNs in `y` (missing values) are dropped first."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    present = ~np.isnan(ys)
    if not present.all():
        xs, ys = xs[present], ys[present]
    keep = minmax_indices(ys, max_points)
    return xs[keep], ys[keep]
