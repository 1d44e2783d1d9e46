"""Mask arithmetic for the views: even block grids, changes between two masks, weight ages since initialisation."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def as_matrix(mask: np.ndarray) -> np.ndarray:
    """A 2-D view: rows are output units (Linear rows, Conv filters), columns their inputs."""
    if mask.ndim == 0:
        return mask.reshape(1, 1)
    if mask.ndim == 1:
        return mask.reshape(1, -1)
    return mask.reshape(mask.shape[0], -1)


def block_size(rows: int, cols: int, max_cells: int) -> int:
    """The smallest square block side whose grid over a rows × cols matrix has at most `max_cells` cells.

    Every cell covers the same block (only the last row and column of cells may be cut short): uneven cells,
    some two weights tall and some three, draw stripes that are not in the mask.
    """
    side = max(1, math.ceil(math.sqrt(rows * cols / max(1, max_cells))))
    while math.ceil(rows / side) * math.ceil(cols / side) > max_cells:
        side += 1
    return side


def block_means(matrix: np.ndarray, max_cells: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Mean of each square block; the full matrix (side 1) whenever it has at most `max_cells` values."""
    values = np.asarray(matrix, dtype=np.float32)
    rows, cols = values.shape
    side = block_size(rows, cols, max_cells)
    if side == 1:
        return values, (rows, cols)
    row_starts, col_starts = np.arange(0, rows, side), np.arange(0, cols, side)
    sums = np.add.reduceat(np.add.reduceat(values, row_starts, axis=0), col_starts, axis=1)
    counts = np.outer(np.diff(np.append(row_starts, rows)), np.diff(np.append(col_starts, cols)))
    return sums / counts, (len(row_starts), len(col_starts))


def change_grid(previous: np.ndarray, current: np.ndarray, max_cells: int) -> dict[str, object]:
    """Weights pruned (kept before, not now) and regrown (the reverse) between two masks of one layer.

    `change` per cell is the share regrown minus the share pruned, in [-1, 1]: at full resolution exactly
    -1 (pruned), 0 (unchanged) or 1 (regrown).
    """
    if previous.shape != current.shape:
        raise ValueError(f"mask shapes differ: {list(previous.shape)} and {list(current.shape)}")
    pruned = previous & ~current
    regrown = ~previous & current
    signed = as_matrix(regrown).astype(np.float32) - as_matrix(pruned).astype(np.float32)
    grid, grid_shape = block_means(signed, max_cells)
    return {"pruned": int(pruned.sum()), "regrown": int(regrown.sum()), "change": grid,
            "grid_shape": list(grid_shape), "shape": list(as_matrix(current).shape)}


def weight_ages(snapshots: Iterable[tuple[int, np.ndarray]], epoch: int, bins: int = 12) -> dict[str, object]:
    """How long each weight's mask bit has stayed as it is at `epoch`, counted from initialisation.

    Epoch 0 is the dense network: a weight pruned in the first snapshot flipped at that snapshot's epoch, a
    weight kept in every snapshot never flipped (its age is `epoch`). So at epoch 1 "never flipped" plus the
    pruned count is the layer's size, as the layer table says.
    """
    mask: np.ndarray | None = None
    last_change: np.ndarray | None = None
    for snapshot_epoch, current in snapshots:
        if mask is None or last_change is None:
            last_change = np.where(current, 0, snapshot_epoch).astype(np.int32)
        else:
            last_change[current != mask] = snapshot_epoch
        mask = current
    if mask is None or last_change is None:
        raise ValueError("no snapshots")
    age = epoch - last_change
    edges = np.unique(np.round(np.geomspace(1, max(2, epoch + 2), bins + 1)).astype(int)) - 1
    edges[-1] = max(int(edges[-1]), int(age.max()) + 1)
    kept, _ = np.histogram(age[mask], bins=edges)
    pruned, _ = np.histogram(age[~mask], bins=edges)
    return {"epoch": epoch, "edges": edges.tolist(), "kept": kept.tolist(), "pruned": pruned.tolist(),
            "never_changed": int((last_change == 0).sum()), "total": int(mask.size), "counted_from": 0}
