"""Incoming mask snapshots (worker reports, tracked-run batches): each must decode before anything is stored."""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.errors import Invalid
from backend.maskviews.cache import reported_for
from backend.maskviews.service import MaskNotFound, mask_at
from backend.tables import MaskSnapshot
from prunescope import maskcodec
from prunescope.contract.records import MaskPayload


def snapshot_rows(session: Session, run_id: int, epochs: Sequence[tuple[int, Mapping[str, MaskPayload]]],
                  lease: str | None = None) -> list[dict[str, Any]]:
    """`mask_snapshots` rows for each (epoch, masks), in epoch order; a delta decodes against the previous epoch's
    mask in the same call or, failing that, the stored one. Any snapshot that does not decode is a 422.

    With the reporter's `lease`, each layer's newest decoded mask is kept (`ReportedMasks`) with the epoch, length
    and crc32 of its bytes, so the next report's deltas decode against it: one query for the previous epoch's
    stored bytes instead of replaying up to 16 frames of each layer (a worker reports every epoch)."""
    decoded: dict[tuple[str, int], np.ndarray] = {}
    reported = _Reported(session, run_id, lease)
    newest: dict[str, tuple[int, bytes, np.ndarray]] = {}  # per layer: its newest epoch in this call
    rows = []
    several = len(epochs) > 1
    for epoch, masks in epochs:
        where = f"epoch {epoch}, " if several else ""
        for layer, payload in masks.items():
            if not 0 < len(layer) <= 200 or "\x00" in layer:
                raise Invalid("mask layer names are 1 to 200 characters, without NUL")
            try:
                data = base64.b64decode(payload.data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Invalid(f"{where}mask {layer!r}: data is not base64") from exc
            encoded = maskcodec.EncodedMask(tuple(payload.shape), payload.encoding, data)
            previous = None
            if payload.encoding == maskcodec.DELTA:
                previous = decoded.get((layer, epoch - 1))
                if previous is None:
                    previous = reported.get(layer, epoch - 1)
                if previous is None:
                    try:
                        previous = mask_at(session, run_id, layer, epoch - 1)
                    except MaskNotFound as exc:
                        raise Invalid(f"{where}mask {layer!r}: a delta needs epoch {epoch - 1} stored first") \
                            from exc
            try:
                decoded[(layer, epoch)] = mask = maskcodec.decode(encoded, previous)
            except maskcodec.MaskDecodeError as exc:
                raise Invalid(f"{where}mask {layer!r}: {exc}") from exc
            newest[layer] = (epoch, data, mask)
            rows.append({"run_id": run_id, "layer": layer, "epoch": epoch, "shape": list(payload.shape),
                         "encoding": payload.encoding, "data": data, "nbytes": len(data)})
    for layer, (epoch, data, mask) in newest.items():
        reported.put(layer, epoch, data, mask)
    return rows


class _Reported:
    """A run's reported masks (`ReportedMasks`) under one lease, found again by the bytes the database holds.

    A hit needs the snapshot stored for that epoch to be the very bytes the kept mask was decoded from (a report
    replaced since, or never committed, misses), and within one lease the epochs before it are only ever written
    by that lease's reporter, in order (a resumed run reports under a new lease). A miss replays the stored
    chain."""

    def __init__(self, session: Session, run_id: int, lease: str | None) -> None:
        self.session, self.run_id, self.lease = session, run_id, lease
        self.masks = reported_for(session) if lease else None
        self.stored: dict[int, dict[str, bytes]] = {}

    def get(self, layer: str, epoch: int) -> np.ndarray | None:
        if self.masks is None or self.lease is None:
            return None
        if epoch not in self.stored:  # one query for every layer of that epoch
            self.stored[epoch] = {name: data for name, data in self.session.execute(
                select(MaskSnapshot.layer, MaskSnapshot.data)
                .where(MaskSnapshot.run_id == self.run_id, MaskSnapshot.epoch == epoch))}
        data = self.stored[epoch].get(layer)
        return None if data is None else self.masks.get(self.run_id, self.lease, layer, _identity(epoch, data))

    def put(self, layer: str, epoch: int, data: bytes, mask: np.ndarray) -> None:
        if self.masks is not None and self.lease is not None:
            self.masks.put(self.run_id, self.lease, layer, _identity(epoch, data), mask)


def _identity(epoch: int, data: bytes) -> tuple[int, int, int]:
    return epoch, len(data), zlib.crc32(data)
