"""Incoming mask snapshots (worker reports, tracked-run batches): each must decode before anything is stored."""

from __future__ import annotations

import base64
import binascii
import functools
import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from backend.errors import Invalid, NotFound
from backend.maskviews.cache import reported_for
from backend.maskviews.service import MaskNotFound, mask_at
from backend.tables import MaskSnapshot
from prunescope import maskcodec
from prunescope.contract.records import MaskPayload


def snapshot_rows(session: Session, run_id: int, epochs: Sequence[tuple[int, Mapping[str, MaskPayload]]],
                  lease: str | None = None) -> list[dict[str, Any]]:
    """`mask_snapshots` rows for each (epoch, masks), in epoch order; a delta is checked against the previous
    epoch's mask in the same call or, failing that, the stored one. Any snapshot that does not decode is a 422.

    Checking a delta needs only how many weights the previous mask kept (`maskcodec.check`: the same refusals as
    decoding it), so no mask is built here unless the stored chain must be replayed. With the reporter's `lease`,
    each layer's newest count is kept (`ReportedMasks`) with the epoch, length and crc32 of its bytes, so the
    next report's deltas are checked against it: one query for the previous epoch's stored bytes instead of
    replaying up to 16 frames of each layer (a worker reports every epoch)."""
    layers = {layer for _, masks in epochs for layer in masks}  # names the contract checked (`LayerName`)
    checked: dict[tuple[str, int], maskcodec.Kept] = {}
    reported = _Reported(session, run_id, lease, layers)
    newest: dict[str, tuple[int, bytes, maskcodec.Kept]] = {}  # per layer: its newest epoch in this call
    rows = []
    several = len(epochs) > 1
    for epoch, masks in epochs:
        where = f"epoch {epoch}, " if several else ""
        for layer, payload in masks.items():
            try:
                data = base64.b64decode(payload.data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Invalid(f"{where}mask {layer!r}: data is not base64") from exc
            encoded = maskcodec.EncodedMask(tuple(payload.shape), payload.encoding, data)
            previous = None
            if payload.encoding == maskcodec.DELTA:
                previous = checked.get((layer, epoch - 1))
                if previous is None:
                    previous = reported.get(layer, epoch - 1)
                if previous is None:
                    try:
                        previous = maskcodec.Kept.of(mask_at(session, run_id, layer, epoch - 1))
                    except MaskNotFound as exc:
                        raise Invalid(f"{where}mask {layer!r}: a delta needs epoch {epoch - 1} stored first") \
                            from exc
            try:
                checked[(layer, epoch)] = kept = maskcodec.check(encoded, previous)
            except maskcodec.MaskDecodeError as exc:
                raise Invalid(f"{where}mask {layer!r}: {exc}") from exc
            newest[layer] = (epoch, data, kept)
            rows.append({"run_id": run_id, "layer": layer, "epoch": epoch, "shape": list(payload.shape),
                         "encoding": payload.encoding, "data": data, "nbytes": len(data)})
    for layer, (epoch, data, kept) in newest.items():
        reported.put(layer, epoch, data, kept)
    return rows


_SNAPSHOTS = MaskSnapshot.__table__.c
STORED_SNAPSHOTS = select(_SNAPSHOTS.layer, _SNAPSHOTS.data).where(_SNAPSHOTS.run_id == bindparam("rid"),
                                                                   _SNAPSHOTS.epoch == bindparam("n"))
MAX_SEEKS = 500  # more layers than this in one call: one read of the run's index instead (bounded parameters)


def keyframes_after(session: Session, run_id: int, numbers: list[int]) -> tuple[list[int], list[dict[str, Any]]]:
    """A replayed epoch e (a tracked run's, or a worker's report sent again) replaces itself only: epoch e+1's
    stored deltas (when e+1 is not replaced too) were encoded against the old e, so they are stored again as key
    frames of the masks they decode to now, from the old chain. Returns the ids of the rows to replace and their
    key-frame rows."""
    after = sorted({n + 1 for n in numbers} - set(numbers))
    rows = session.execute(select(MaskSnapshot.id, MaskSnapshot.layer, MaskSnapshot.epoch, MaskSnapshot.shape)
                           .where(MaskSnapshot.run_id == run_id, MaskSnapshot.epoch.in_(after),
                                  MaskSnapshot.encoding == maskcodec.DELTA)).all() if after else []
    ids, keyframes = [], []
    for row_id, layer, epoch, shape in rows:
        try:
            mask = mask_at(session, run_id, layer, epoch)
        except (NotFound, Invalid):
            continue  # a chain that does not decode now: nothing to keep
        data = maskcodec.encode(mask).data
        ids.append(row_id)
        keyframes.append({"run_id": run_id, "layer": layer, "epoch": epoch, "shape": list(shape),
                          "encoding": maskcodec.KEY, "data": data, "nbytes": len(data)})
    return ids, keyframes


@functools.lru_cache(maxsize=64)
def stored_layers(count: int) -> Select[Any]:
    """`STORED_SNAPSHOTS` for `count` named layers (`l0`, `l1`, ...), by the snapshots' unique key (run, layer,
    epoch): one index seek a layer. By run and epoch alone the index is read across every epoch of every layer of
    the run, a cost that grew with the run. One statement per layer count, kept: an expanding IN is compiled again
    on every execution (a tenth of a millisecond a report)."""
    return STORED_SNAPSHOTS.where(_SNAPSHOTS.layer.in_([bindparam(f"l{i}") for i in range(count)]))


class _Reported:
    """A run's reported masks' counts (`ReportedMasks`) under one lease, found again by the bytes the database holds.

    A hit needs the snapshot stored for that epoch to be the very bytes the kept count was checked from (a report
    replaced since, or never committed, misses), and within one lease the epochs before it are only ever written
    by that lease's reporter, in order (a resumed run reports under a new lease). A miss replays the stored
    chain."""

    def __init__(self, session: Session, run_id: int, lease: str | None, layers: Collection[str]) -> None:
        self.session, self.run_id, self.lease, self.layers = session, run_id, lease, sorted(layers)
        self.masks = reported_for(session) if lease else None
        self.stored: dict[int, dict[str, bytes]] = {}

    def get(self, layer: str, epoch: int) -> maskcodec.Kept | None:
        if self.masks is None or self.lease is None:
            return None
        if epoch not in self.stored:  # one query for every layer of that epoch, plain rows (no ORM loading)
            key = {"rid": self.run_id, "n": epoch}
            if len(self.layers) <= MAX_SEEKS:
                named = {f"l{i}": layer for i, layer in enumerate(self.layers)}
                rows = self.session.connection().execute(stored_layers(len(self.layers)), {**key, **named})
            else:
                rows = self.session.connection().execute(STORED_SNAPSHOTS, key)
            self.stored[epoch] = {name: data for name, data in rows}
        data = self.stored[epoch].get(layer)
        return None if data is None else self.masks.get(self.run_id, self.lease, layer, _identity(epoch, data))

    def put(self, layer: str, epoch: int, data: bytes, kept: maskcodec.Kept) -> None:
        if self.masks is not None and self.lease is not None:
            self.masks.put(self.run_id, self.lease, layer, _identity(epoch, data), kept)


def _identity(epoch: int, data: bytes) -> tuple[int, int, int]:
    return epoch, len(data), zlib.crc32(data)
