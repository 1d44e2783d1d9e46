"""Incoming mask snapshots (worker reports, tracked-run batches): each must decode before anything is stored."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from backend.errors import Invalid
from backend.maskviews.service import MaskNotFound, mask_at
from prunescope import maskcodec
from prunescope.contract.records import MaskPayload


def snapshot_rows(session: Session, run_id: int,
                  epochs: Sequence[tuple[int, Mapping[str, MaskPayload]]]) -> list[dict[str, Any]]:
    """`mask_snapshots` rows for each (epoch, masks), in epoch order; a delta decodes against the previous epoch's
    mask in the same call or, failing that, the stored one. Any snapshot that does not decode is a 422."""
    decoded: dict[tuple[str, int], np.ndarray] = {}
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
                    try:
                        previous = mask_at(session, run_id, layer, epoch - 1)
                    except MaskNotFound as exc:
                        raise Invalid(f"{where}mask {layer!r}: a delta needs epoch {epoch - 1} stored first") \
                            from exc
            try:
                decoded[(layer, epoch)] = maskcodec.decode(encoded, previous)
            except maskcodec.MaskDecodeError as exc:
                raise Invalid(f"{where}mask {layer!r}: {exc}") from exc
            rows.append({"run_id": run_id, "layer": layer, "epoch": epoch, "shape": list(payload.shape),
                         "encoding": payload.encoding, "data": data, "nbytes": len(data)})
    return rows
