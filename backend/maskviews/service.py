"""Reads stored mask snapshots back (replaying deltas from the newest key frame) and derives chart data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.tables import Epoch, MaskSnapshot
from prunescope import maskcodec


class MaskNotFound(LookupError):
    """No snapshot of that layer at that epoch (HTTP 404)."""


def layer_names(session: Session, run_id: int) -> list[str]:
    """Prunable layers in model order (as the newest epoch lists them), else in snapshot order."""
    newest = session.scalar(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch.desc()).limit(1))
    if newest is not None and newest.layers:
        return [layer["name"] for layer in newest.layers]
    rows = session.execute(select(MaskSnapshot.layer).where(MaskSnapshot.run_id == run_id)
                           .group_by(MaskSnapshot.layer).order_by(func.min(MaskSnapshot.id)))
    return [name for (name,) in rows]


def layers_overview(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Each layer with snapshots: its shape, the epochs stored, and the bytes they take."""
    rows = session.execute(
        select(MaskSnapshot.layer, MaskSnapshot.epoch, MaskSnapshot.shape, MaskSnapshot.nbytes)
        .where(MaskSnapshot.run_id == run_id).order_by(MaskSnapshot.epoch))
    by_layer: dict[str, dict[str, Any]] = {}
    for layer, epoch, shape, nbytes in rows:
        entry = by_layer.setdefault(layer, {"name": layer, "shape": shape, "epochs": [], "bytes": 0})
        entry["epochs"].append(epoch)
        entry["bytes"] += nbytes
    order = {name: i for i, name in enumerate(layer_names(session, run_id))}
    out = sorted(by_layer.values(), key=lambda e: order.get(e["name"], len(order)))
    for entry in out:
        weights = math.prod(entry["shape"]) * len(entry["epochs"])
        entry["bits_per_weight"] = entry["bytes"] * 8 / weights if weights else 0.0
    return out


def _chain(session: Session, run_id: int, layer: str, epoch: int) -> list[MaskSnapshot]:
    """The snapshots from the newest key frame at or before `epoch` up to `epoch`."""
    key_epoch = session.scalar(select(func.max(MaskSnapshot.epoch)).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer, MaskSnapshot.epoch <= epoch,
        MaskSnapshot.encoding == maskcodec.KEY))
    if key_epoch is None:
        raise MaskNotFound(f"no mask of layer {layer!r} at or before epoch {epoch}")
    chain = list(session.scalars(select(MaskSnapshot).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer,
        MaskSnapshot.epoch >= key_epoch, MaskSnapshot.epoch <= epoch).order_by(MaskSnapshot.epoch)))
    if chain[-1].epoch != epoch:
        raise MaskNotFound(f"no mask of layer {layer!r} at epoch {epoch}")
    return chain


def _decode(row: MaskSnapshot, previous: np.ndarray | None) -> np.ndarray:
    return maskcodec.decode(maskcodec.EncodedMask(tuple(row.shape), row.encoding, row.data), previous)


def mask_at(session: Session, run_id: int, layer: str, epoch: int) -> np.ndarray:
    """The exact boolean mask of `layer` after `epoch`."""
    mask: np.ndarray | None = None
    for row in _chain(session, run_id, layer, epoch):
        mask = _decode(row, mask)
    assert mask is not None
    return mask


def latest_epoch(session: Session, run_id: int, layer: str) -> int:
    value = session.scalar(select(func.max(MaskSnapshot.epoch)).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer))
    if value is None:
        raise MaskNotFound(f"run {run_id} has no mask snapshots of layer {layer!r}")
    return int(value)


def as_matrix(mask: np.ndarray) -> np.ndarray:
    """A 2-D view: rows are output units (Linear rows, Conv filters), columns their inputs."""
    if mask.ndim == 0:
        return mask.reshape(1, 1)
    if mask.ndim == 1:
        return mask.reshape(1, -1)
    return mask.reshape(mask.shape[0], -1)


def density_grid(mask: np.ndarray, max_cells: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Share of kept weights per cell of a grid of at most `max_cells` cells, keeping the aspect ratio."""
    matrix = as_matrix(mask).astype(np.float32)
    rows, cols = matrix.shape
    scale = min(1.0, math.sqrt(max_cells / max(1, rows * cols)))
    grid_rows = max(1, min(rows, int(rows * scale)))
    grid_cols = max(1, min(cols, max_cells // grid_rows, max(1, int(cols * scale))))
    row_edges = np.linspace(0, rows, grid_rows + 1).astype(int)
    col_edges = np.linspace(0, cols, grid_cols + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(matrix, row_edges[:-1], axis=0), col_edges[:-1], axis=1)
    counts = np.outer(np.diff(row_edges), np.diff(col_edges))
    return sums / counts, (grid_rows, grid_cols)


def image_shape(inputs: int) -> tuple[int, int, int] | None:
    """(channels, height, width) of a flattened square image with `inputs` values, if it is one."""
    for channels in (1, 3):
        side = math.isqrt(inputs // channels) if inputs % channels == 0 else 0
        if side > 1 and channels * side * side == inputs:
            return channels, side, side
    return None


def connectivity(session: Session, run_id: int, epoch: int | None) -> dict[str, Any]:
    """How many first-layer connections each input pixel keeps (Han et al. 2015, Fig. 4)."""
    names = layer_names(session, run_id)
    if not names:
        raise MaskNotFound(f"run {run_id} has no mask snapshots yet")
    first = names[0]
    epoch = latest_epoch(session, run_id, first) if epoch is None else epoch
    mask = mask_at(session, run_id, first, epoch)
    shape = image_shape(mask.shape[1]) if mask.ndim == 2 else None
    if shape is None:
        raise MaskNotFound(f"the first layer {first!r} (shape {list(mask.shape)}) is not a Linear layer over an image")
    channels, height, width = shape
    counts = mask.sum(axis=0).reshape(channels, height, width).sum(axis=0)
    return {"layer": first, "epoch": epoch, "image_shape": [height, width], "counts": counts.tolist(),
            "max": int(mask.shape[0] * channels)}


def layer_series(session: Session, run_id: int) -> dict[str, Any]:
    """Per-layer sparsity, pruned, regrown and threshold over epochs, from the epoch records."""
    epochs = list(session.execute(select(Epoch.epoch, Epoch.layers).where(Epoch.run_id == run_id)
                                  .order_by(Epoch.epoch)))
    names: list[str] = []
    shapes: dict[str, list[int]] = {}
    for _, layers in epochs:
        for layer in layers:
            if layer["name"] not in shapes:
                names.append(layer["name"])
                shapes[layer["name"]] = layer.get("shape", [])
    stats = ("sparsity", "pruned", "regrown", "threshold")
    series: dict[str, dict[str, list[Any]]] = {n: {s: [] for s in stats} for n in names}
    for _, layers in epochs:
        by_name = {layer["name"]: layer for layer in layers}
        for name in names:
            layer = by_name.get(name, {})
            for stat in stats:
                series[name][stat].append(layer.get(stat))
    return {"epochs": [e for e, _ in epochs],
            "layers": [{"name": n, "shape": shapes[n], **series[n]} for n in names]}


def stability(session: Session, run_id: int, layer: str, epoch: int, bins: int = 12) -> dict[str, Any]:
    """How long each weight's mask bit has stayed unchanged at `epoch`, as histograms for kept and pruned weights."""
    rows = list(session.scalars(select(MaskSnapshot).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer, MaskSnapshot.epoch <= epoch)
        .order_by(MaskSnapshot.epoch)))
    if not rows or rows[-1].epoch != epoch:
        raise MaskNotFound(f"no mask of layer {layer!r} at epoch {epoch}")
    mask: np.ndarray | None = None
    last_change: np.ndarray | None = None
    for row in rows:
        current = _decode(row, mask)
        if mask is None or last_change is None:
            last_change = np.full(current.shape, row.epoch, dtype=np.int32)
        else:
            last_change[current != mask] = row.epoch
        mask = current
    assert mask is not None and last_change is not None
    first_epoch = rows[0].epoch
    age = epoch - last_change  # epochs since the bit last flipped (or since the first snapshot)
    edges = np.unique(np.round(np.geomspace(1, max(2, epoch - first_epoch + 2), bins + 1)).astype(int)) - 1
    edges[-1] = max(edges[-1], int(age.max()) + 1)
    kept, _ = np.histogram(age[mask], bins=edges)
    pruned, _ = np.histogram(age[~mask], bins=edges)
    return {"layer": layer, "epoch": epoch, "edges": edges.tolist(), "kept": kept.tolist(), "pruned": pruned.tolist(),
            "never_changed": int((last_change == first_epoch).sum()), "total": int(mask.size)}
