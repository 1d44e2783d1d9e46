"""Mask snapshot codec shared by worker and API: each epoch's mask as a change against the previous one.

A key frame holds the mask's bits. A delta holds two bit streams: which previously kept weights were
pruned, and which previously pruned weights were regrown — each over only the positions where it can
happen, so a 98 %-sparse mask that regrows a few weights costs a few bytes. Each stream is stored as
zlib'd packed bits or, when sparse, as zlib'd LEB128 gaps between set bits, whichever is smaller
(within a few % of the streams' order-0 entropy on real runs).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

KEY = "key"  # the mask itself
DELTA = "delta"  # pruned and regrown bits against the same layer's mask at the previous epoch
KEYFRAME_EVERY = 16  # bounds how many deltas a read has to replay
MAX_WEIGHTS = 2**34

_PACKED, _GAPS = 0, 1
_HEADER = struct.Struct("<BI")  # stream kind, payload length


class MaskDecodeError(ValueError):
    """A snapshot's bytes do not decode to a mask of its declared shape."""


@dataclass(frozen=True)
class EncodedMask:
    shape: tuple[int, ...]
    encoding: str
    data: bytes

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "encoding": self.encoding, "data": base64.b64encode(self.data).decode()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EncodedMask:
        try:
            shape = tuple(int(n) for n in doc["shape"])
            encoding = str(doc["encoding"])
            data = base64.b64decode(doc["data"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise MaskDecodeError(f"malformed mask snapshot: {exc}") from exc
        return cls(shape, encoding, data)


# -- bit streams ---------------------------------------------------------------------------------

def _varint(values: np.ndarray) -> bytes:
    """LEB128 of non-negative integers, vectorised."""
    v = values.astype(np.uint64)
    lengths = np.ones(len(v), dtype=np.int64)
    for k in range(1, 10):
        lengths += v >= np.uint64(1 << (7 * k))
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    for k in range(int(lengths.max(initial=0))):
        sel = lengths > k
        low = (v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (lengths[sel] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + k] = (low | more).astype(np.uint8)
    return out.tobytes()


def _unvarint(raw: bytes, limit: int) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8)
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    if b[-1] & 0x80:
        raise MaskDecodeError("truncated gap stream")
    ends = (b & 0x80) == 0
    index = np.concatenate(([0], np.cumsum(ends)[:-1]))  # which value each byte belongs to
    first = np.concatenate(([0], np.flatnonzero(ends)[:-1] + 1))
    if len(first) > limit:
        raise MaskDecodeError("gap stream holds more bits than the mask")
    position = np.arange(len(b)) - first[index]
    if position.max() > 5:
        raise MaskDecodeError("gap too large")
    weights = (b & 0x7F).astype(np.float64) * np.power(2.0, 7 * position)
    return np.bincount(index, weights=weights, minlength=len(first)).astype(np.int64)[: len(first)]


def _encode_stream(bits: np.ndarray) -> bytes:
    density = float(bits.mean()) if bits.size else 0.0
    candidates = []
    if density < 0.15:  # sparse: gaps between set bits beat packed bits below a few %
        idx = np.flatnonzero(bits)
        candidates.append((_GAPS, zlib.compress(_varint(np.diff(idx, prepend=-1) - 1), 9)))
    if density >= 0.05:
        # Level 6: level 9 is ~30x slower on sparse packed bits for ~7 % fewer bytes.
        candidates.append((_PACKED, zlib.compress(np.packbits(bits).tobytes(), 6)))
    kind, payload = min(candidates, key=lambda c: len(c[1]))
    return _HEADER.pack(kind, len(payload)) + payload


def _decode_stream(data: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    """`count` bits from the stream at `offset`; returns them and the offset after the stream."""
    if len(data) < offset + _HEADER.size:
        raise MaskDecodeError("mask data ends inside a stream header")
    kind, length = _HEADER.unpack_from(data, offset)
    start, end = offset + _HEADER.size, offset + _HEADER.size + length
    if end > len(data):
        raise MaskDecodeError("mask data ends inside a stream")
    try:
        inflater = zlib.decompressobj()
        # Bound the output: a hostile payload cannot expand past what the declared shape needs.
        raw = inflater.decompress(data[start:end], ((count + 7) // 8 if kind == _PACKED else 6 * count) + 1)
    except zlib.error as exc:
        raise MaskDecodeError(f"mask data does not decompress: {exc}") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        raise MaskDecodeError("mask stream is larger than its shape allows, or truncated")
    if kind == _PACKED:
        if len(raw) != (count + 7) // 8:
            raise MaskDecodeError(f"mask stream holds {len(raw)} bytes, {count} bits need {(count + 7) // 8}")
        return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=count).astype(bool), end
    if kind == _GAPS:
        positions = np.cumsum(_unvarint(raw, count) + 1) - 1
        if len(positions) and positions[-1] >= count:
            raise MaskDecodeError("gap stream points past the end of the mask")
        bits = np.zeros(count, dtype=bool)
        bits[positions] = True
        return bits, end
    raise MaskDecodeError(f"unknown stream kind {kind}")


# -- masks ---------------------------------------------------------------------------------------

def encode(mask: np.ndarray, previous: np.ndarray | None = None) -> EncodedMask:
    """Encode `mask`; with the previous epoch's mask of the same shape, as a delta against it."""
    bits = np.ascontiguousarray(mask, dtype=bool).ravel()
    if previous is None or previous.shape != mask.shape:
        return EncodedMask(tuple(mask.shape), KEY, _encode_stream(bits))
    before = np.ascontiguousarray(previous, dtype=bool).ravel()
    pruned = ~bits[before]  # among weights kept before: which were pruned
    regrown = bits[~before]  # among weights pruned before: which came back
    return EncodedMask(tuple(mask.shape), DELTA, _encode_stream(pruned) + _encode_stream(regrown))


def decode(snapshot: EncodedMask, previous: np.ndarray | None = None) -> np.ndarray:
    """The boolean mask a snapshot holds; a delta needs the previous epoch's mask (MaskDecodeError if wrong)."""
    if snapshot.encoding not in (KEY, DELTA) or len(snapshot.shape) > 8 or any(n < 0 for n in snapshot.shape):
        raise MaskDecodeError(f"malformed mask snapshot: encoding {snapshot.encoding!r}, shape {list(snapshot.shape)}")
    size = snapshot.size
    if size > MAX_WEIGHTS:
        raise MaskDecodeError(f"mask of {size} weights is larger than prunescope stores")
    if snapshot.encoding == KEY:
        bits, end = _decode_stream(snapshot.data, 0, size)
    else:
        if previous is None or previous.shape != snapshot.shape:
            raise MaskDecodeError("a delta snapshot needs the previous epoch's mask of the same shape")
        before = np.ascontiguousarray(previous, dtype=bool).ravel()
        kept_before = int(before.sum())
        pruned, offset = _decode_stream(snapshot.data, 0, kept_before)
        regrown, end = _decode_stream(snapshot.data, offset, size - kept_before)
        bits = before.copy()
        bits[np.flatnonzero(before)[pruned]] = False
        bits[np.flatnonzero(~before)[regrown]] = True
    if end != len(snapshot.data):
        raise MaskDecodeError("trailing bytes after the mask streams")
    return bits.reshape(snapshot.shape)


class MaskEncoder:
    """Encodes each epoch's masks as deltas against the previous epoch, with a key frame every few epochs.

    Shared by the worker's reports and the tracking SDK, so both store the same chain the API decodes."""

    def __init__(self) -> None:
        self.previous: dict[str, np.ndarray] = {}
        self.previous_epoch: int | None = None

    def encode(self, epoch: int, layer_masks: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        chained = self.previous_epoch == epoch - 1 and epoch % KEYFRAME_EVERY != 1
        out = {}
        for name, mask in layer_masks.items():
            base = self.previous.get(name) if chained else None
            out[name] = encode(mask, base).to_json()
        self.previous = {name: np.array(mask, dtype=bool, copy=True) for name, mask in layer_masks.items()}
        self.previous_epoch = epoch
        return out
