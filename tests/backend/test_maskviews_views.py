"""Mask views: full resolution when a layer fits, even blocks beyond, changes since the previous epoch, ages."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.db import Database
from backend.maskviews import grids
from backend.tables import MaskSnapshot
from prunescope import maskcodec
from tests.backend.conftest import digits_config


def store_masks(client: TestClient, layer: str, masks: dict[int, np.ndarray]) -> int:
    """A run with these key-frame snapshots of one layer, written straight to the database."""
    response = client.post("/api/runs", json=digits_config(training={"epochs": max(masks)}))
    assert response.status_code == 201, response.text
    run_id: int = response.json()["id"]
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.writing() as session:
        for epoch, mask in masks.items():
            encoded = maskcodec.encode(mask)
            session.add(MaskSnapshot(run_id=run_id, layer=layer, epoch=epoch, shape=list(mask.shape),
                                     encoding=encoded.encoding, data=encoded.data, nbytes=len(encoded.data)))
    return run_id


def test_blocks_are_equal_squares_so_binning_draws_no_stripes() -> None:
    # Columns kept, kept, pruned, repeating: every block of 3 columns keeps exactly 2/3. Uneven cells (some 2
    # columns wide, some 3, as 100 × 300 → 36 × 110 made) show bands of 50 %, 67 % and 100 % instead.
    matrix = np.tile(np.array([True, True, False]), (100, 100))
    side = grids.block_size(100, 300, 4096)
    assert side == 3
    grid, shape = grids.block_means(matrix, 4096)
    assert shape == (34, 100) and shape[0] * shape[1] <= 4096
    assert np.allclose(grid, 2 / 3)
    # At full resolution nothing is averaged.
    same, full_shape = grids.block_means(matrix, 30_000)
    assert full_shape == (100, 300) and np.array_equal(same, matrix.astype(np.float32))


def test_block_size_fits_the_budget_for_any_shape() -> None:
    for rows, cols, cells in ((300, 784, 500), (1, 100_000, 4096), (5000, 3, 64), (7, 7, 1)):
        side = grids.block_size(rows, cols, cells)
        assert -(-rows // side) * -(-cols // side) <= cells, (rows, cols, cells)


def test_full_resolution_grid_when_the_layer_fits(client: TestClient) -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((100, 300)) < 0.3
    run_id = store_masks(client, "fc2.weight", {1: mask})
    body = client.get(f"/api/runs/{run_id}/masks/fc2.weight", params={"max_cells": 30_000}).json()
    assert body["grid_shape"] == [100, 300] and body["block"] == 1
    assert np.array_equal(np.array(body["density"]) == 1.0, mask)
    binned = client.get(f"/api/runs/{run_id}/masks/fc2.weight", params={"max_cells": 4096}).json()
    assert binned["block"] > 1
    assert binned["grid_shape"][0] * binned["grid_shape"][1] <= 4096


def test_changes_count_pruned_and_regrown_since_the_previous_snapshot(client: TestClient) -> None:
    first = np.ones((4, 6), dtype=bool)
    first[0, :3] = False  # 3 pruned from the dense start
    second = first.copy()
    second[1, 0] = second[1, 1] = False  # 2 pruned
    second[0, 0] = True  # 1 regrown
    run_id = store_masks(client, "fc1.weight", {1: first, 2: second})
    body = client.get(f"/api/runs/{run_id}/masks/fc1.weight/changes", params={"epoch": 2, "max_cells": 100}).json()
    assert (body["pruned"], body["regrown"], body["previous_epoch"]) == (2, 1, 1)
    change = np.array(body["change"])
    assert change[1, 0] == -1 and change[1, 1] == -1 and change[0, 0] == 1
    assert np.count_nonzero(change) == 3
    start = client.get(f"/api/runs/{run_id}/masks/fc1.weight/changes", params={"epoch": 1}).json()
    assert (start["pruned"], start["regrown"], start["previous_epoch"]) == (3, 0, 0)  # against the dense network
    assert client.get(f"/api/runs/{run_id}/masks/fc1.weight/changes", params={"epoch": 3}).status_code == 404
    assert client.get(f"/api/runs/{run_id}/masks/fc1.weight/changes", params={"max_cells": 0}).status_code == 422


def test_change_grid_refuses_masks_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        grids.change_grid(np.ones((2, 3), dtype=bool), np.ones((3, 2), dtype=bool), 10)


def test_weight_ages_count_from_the_dense_initialisation(client: TestClient) -> None:
    mask = np.ones((10, 20), dtype=bool)
    mask[:6, :] = False  # 120 of 200 pruned at epoch 1
    run_id = store_masks(client, "fc1.weight", {1: mask})
    body = client.get(f"/api/runs/{run_id}/masks/fc1.weight/stability", params={"epoch": 1}).json()
    # "Never flipped" plus the pruned count is the layer's size (it used to say 200 of 200 never flipped).
    assert body["never_changed"] == 80
    assert sum(body["pruned"]) == 120 and sum(body["kept"]) == 80
    assert body["counted_from"] == 0


def test_weight_ages_of_kept_weights_span_the_whole_run() -> None:
    dense = np.ones(4, dtype=bool)
    later = dense.copy()
    later[0] = False
    ages = grids.weight_ages([(1, dense), (2, dense), (3, later)], epoch=3)
    edges = ages["edges"]
    kept_bins = [i for i, n in enumerate(ages["kept"]) if n]
    assert ages["never_changed"] == 3
    assert all(edges[i] <= 3 < edges[i + 1] for i in kept_bins)  # kept since epoch 0: 3 epochs old
    with pytest.raises(ValueError):
        grids.weight_ages([], epoch=1)
