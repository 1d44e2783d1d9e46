"""Reads stored mask snapshots back (replaying deltas from the newest key frame) and derives chart data."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from backend.errors import Invalid, NotFound
from backend.maskviews import grids, repository
from backend.maskviews.cache import cache_for
from backend.tables import MaskSnapshot
from prunescope import maskcodec

as_matrix = grids.as_matrix

# A read decodes at most this many weights (1 byte each while decoding): a stored snapshot declaring a huge
# shape in a few bytes (a decompression bomb) is refused before it costs seconds and gigabytes.
MAX_READ_WEIGHTS = 2**26


# What /layers/{layer} answers of a stored layer entry (older records may lack some, or hold others).
LAYER_FIELDS = ("name", "shape", "sparsity", "pruned", "regrown", "threshold", "histogram")


class MaskNotFound(NotFound):
    """No snapshot of that layer at that epoch."""


def layer_names(session: Session, run_id: int) -> list[str]:
    """Prunable layers in model order (as the newest epoch lists them), else in snapshot order."""
    newest = repository.newest_epoch_layers(session, run_id)
    if newest:
        return [layer["name"] for layer in newest]
    return repository.snapshot_layers(session, run_id)


def layers_overview(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Each layer with snapshots: its shape, the epochs stored, and the bytes they take."""
    by_layer: dict[str, dict[str, Any]] = {}
    for layer, epoch, shape, nbytes in repository.snapshot_sizes(session, run_id):
        entry = by_layer.setdefault(layer, {"name": layer, "shape": shape, "epochs": [], "bytes": 0})
        entry["epochs"].append(epoch)
        entry["bytes"] += nbytes
    order = {name: i for i, name in enumerate(layer_names(session, run_id))}
    out = sorted(by_layer.values(), key=lambda e: order.get(e["name"], len(order)))
    for entry in out:
        weights = math.prod(entry["shape"]) * len(entry["epochs"])
        entry["bits_per_weight"] = entry["bytes"] * 8 / weights if weights else 0.0
    return out


def check_size(layer: str, shape: list[int]) -> None:
    """Refuse to decode a mask larger than a read may cost."""
    weights = math.prod(shape)
    if weights > MAX_READ_WEIGHTS:
        raise Invalid(f"the stored mask of layer {layer!r} declares {weights} weights, more than the "
                      f"{MAX_READ_WEIGHTS} a read decodes")


def _decode(row: MaskSnapshot, previous: np.ndarray | None) -> np.ndarray:
    check_size(row.layer, row.shape)
    try:
        return maskcodec.decode(maskcodec.EncodedMask(tuple(row.shape), row.encoding, row.data), previous)
    except maskcodec.MaskDecodeError as exc:
        raise Invalid(f"the stored mask of layer {row.layer!r} at epoch {row.epoch} does not decode: {exc}") from exc


def mask_at(session: Session, run_id: int, layer: str, epoch: int) -> np.ndarray:
    """The exact boolean mask of `layer` after `epoch` (read-only: it may be shared through the cache).

    Replays deltas from the newest key frame, starting from the longest prefix of that chain already decoded
    (moving an epoch slider forward then decodes one frame). Cache keys hold each frame's id and checksum:
    a re-reported epoch may get a reused row id on SQLite, never the same bytes under the same key by chance.
    """
    rows = repository.chain(session, run_id, layer, epoch)
    if not rows:
        raise MaskNotFound(f"no mask of layer {layer!r} at or before epoch {epoch}")
    if rows[-1].epoch != epoch:
        raise MaskNotFound(f"no mask of layer {layer!r} at epoch {epoch}")
    check_size(layer, rows[-1].shape)
    cache = cache_for(session)
    frames = tuple((row.id, row.encoding, zlib.crc32(row.data), tuple(row.shape)) for row in rows)
    mask: np.ndarray | None = None
    done = 0
    for end in range(len(frames), 0, -1):
        mask = cache.get((run_id, layer, frames[:end]))
        if mask is not None:
            done = end
            break
    if done < len(frames):
        for row in rows[done:]:
            mask = _decode(row, mask)
        assert mask is not None
        cache.put((run_id, layer, frames), mask)
    assert mask is not None
    return mask


def latest_epoch(session: Session, run_id: int, layer: str) -> int:
    value = repository.latest_epoch(session, run_id, layer)
    if value is None:
        raise MaskNotFound(f"run {run_id} has no mask snapshots of layer {layer!r}")
    return int(value)


def density_grid(mask: np.ndarray, max_cells: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Share of kept weights per cell: every weight when the layer has at most `max_cells`, else equal square
    blocks."""
    return grids.block_means(as_matrix(mask), max_cells)


def changes(session: Session, run_id: int, layer: str, epoch: int, max_cells: int) -> dict[str, Any]:
    """Weights pruned and regrown since the layer's previous snapshot (before the first: the dense network)."""
    mask = mask_at(session, run_id, layer, epoch)
    previous_epoch = repository.previous_snapshot_epoch(session, run_id, layer, epoch)
    previous = np.ones_like(mask) if previous_epoch is None else mask_at(session, run_id, layer, previous_epoch)
    out = grids.change_grid(previous, mask, max_cells)
    change = np.asarray(out.pop("change"))
    rows, cols = as_matrix(mask).shape
    return {"layer": layer, "epoch": epoch, "previous_epoch": previous_epoch or 0, **out,
            "block": grids.block_size(rows, cols, max_cells), "change": change.round(4).tolist()}


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
    epochs = repository.epoch_layers(session, run_id)
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


def layer_at(session: Session, run_id: int, layer: str, epoch: int | None) -> dict[str, Any]:
    """One layer's stats at one epoch (the newest by default), with its weight histogram when recorded."""
    found = repository.layers_at(session, run_id, epoch)
    if found is None:
        raise NotFound(f"run {run_id} has no epoch {epoch}" if epoch is not None else f"run {run_id} has no epochs yet")
    number, layers = found
    stats = next((entry for entry in layers if entry.get("name") == layer), None)
    if stats is None:
        raise NotFound(f"epoch {number} of run {run_id} has no layer {layer!r}")
    return {"epoch": number, **{key: stats[key] for key in LAYER_FIELDS if key in stats}}


def stability(session: Session, run_id: int, layer: str, epoch: int, bins: int = 12) -> dict[str, Any]:
    """How long each weight's mask bit has stayed unchanged at `epoch`, as histograms for kept and pruned weights."""
    rows = repository.snapshots_up_to(session, run_id, layer, epoch)
    if not rows or rows[-1].epoch != epoch:
        raise MaskNotFound(f"no mask of layer {layer!r} at epoch {epoch}")

    def decoded() -> Iterator[tuple[int, np.ndarray]]:
        mask: np.ndarray | None = None
        for row in rows:
            mask = _decode(row, mask)
            yield row.epoch, mask

    # Counted from initialisation (epoch 0 is dense), so "never flipped" agrees with the pruned counts.
    return {"layer": layer, **grids.weight_ages(decoded(), epoch, bins)}
