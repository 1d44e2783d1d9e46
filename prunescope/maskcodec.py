"""Mask snapshot codec shared by worker and API: each epoch's mask as a change against the previous one.

A key frame holds the mask's bits. A delta holds two bit streams: which previously kept weights were
pruned, and which previously pruned weights were regrown — each over only the positions where it can
happen, so a 98 %-sparse mask that regrows a few weights costs a few bytes. Each stream is stored as
zlib'd packed bits or, when sparse, as zlib'd LEB128 gaps between set bits, whichever is smaller
(within a few % of the streams' order-0 entropy on real runs).
"""

from __future__ import annotations

import base64
import itertools
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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
        return math.prod(self.shape)

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
    """LEB128 of non-negative integers, vectorised (one pass per byte the largest value needs)."""
    v = values.astype(np.uint64)
    if not len(v) or int(v.max()) < 0x80:  # every value one byte (a dense mask's gaps): the bytes are the values
        return v.astype(np.uint8).tobytes()
    widest = max(1, (int(v.max()).bit_length() + 6) // 7) if len(v) else 1
    lengths = np.ones(len(v), dtype=np.int64)
    for k in range(1, widest):
        lengths += v >= np.uint64(1 << (7 * k))
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    for k in range(widest):
        sel = lengths > k
        low = (v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (lengths[sel] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + k] = (low | more).astype(np.uint8)
    return out.tobytes()


def _small_gaps_varint(positions: np.ndarray) -> bytes:
    """`_varint` of the gaps between a few sorted positions, in plain Python: a delta flips a handful of bits,
    and numpy's per-call overhead would cost ten times the work."""
    at = positions.tolist()
    gaps = [b - a - 1 for a, b in itertools.pairwise([-1, *at])]
    if not gaps or max(gaps) < 0x80:  # each gap one byte (most deltas)
        return bytes(gaps)
    out = bytearray()
    last = -1
    for position in at:
        gap, last = position - last - 1, position
        while gap >= 0x80:
            out.append((gap & 0x7F) | 0x80)
            gap >>= 7
        out.append(gap)
    return bytes(out)


def _unvarint(raw: bytes, limit: int) -> np.ndarray:
    return _unvarint_small(raw, limit) if len(raw) <= 256 else _unvarint_vectorised(raw, limit)


def _unvarint_vectorised(raw: bytes, limit: int) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8)
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    if b[-1] & 0x80:
        raise MaskDecodeError("truncated gap stream")
    if len(b) <= limit and not (b & 0x80).any():  # every value one byte: the values are the bytes
        return b.astype(np.int64)
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


def _unvarint_small(raw: bytes, limit: int) -> np.ndarray:
    """`_unvarint` in plain Python for a few bytes (a delta's streams), with the same checks in the same order."""
    values = _unvarint_list(raw, limit)
    return np.fromiter(values, dtype=np.int64, count=len(values))


def _unvarint_list(raw: bytes, limit: int) -> Sequence[int]:
    if not raw or max(raw) < 0x80:  # every value one byte (most deltas): the values are the bytes
        if len(raw) > limit:
            raise MaskDecodeError("gap stream holds more bits than the mask")
        return raw
    if raw[-1] & 0x80:
        raise MaskDecodeError("truncated gap stream")
    values: list[int] = []
    value = shift = widest = 0
    for byte in raw:
        if byte & 0x80:
            value |= (byte & 0x7F) << shift
            shift += 7
        else:
            values.append(value | (byte << shift))
            if shift > widest:
                widest = shift
            value = shift = 0
    if len(values) > limit:
        raise MaskDecodeError("gap stream holds more bits than the mask")
    if widest > 35:  # a value of more than 6 bytes
        raise MaskDecodeError("gap too large")
    return values


def _encode_stream(bits: np.ndarray) -> bytes:
    return _encode_positions(np.flatnonzero(bits), bits.size, bits)


def _encode_positions(positions: np.ndarray, count: int, bits: np.ndarray | None = None) -> bytes:
    """The stream of `count` bits set at the sorted `positions` (`bits`, when the caller has them, is the same
    stream as booleans): gaps between set bits when sparse, packed bits when dense, whichever is smaller."""
    density = len(positions) / count if count else 0.0
    candidates = []
    if density < 0.15:  # sparse: gaps between set bits beat packed bits below a few %
        gaps = _small_gaps_varint(positions) if len(positions) <= 64 else _varint(np.diff(positions, prepend=-1) - 1)
        candidates.append((_GAPS, _deflate(gaps, 9)))
    if density >= 0.05:
        if bits is None:
            bits = np.zeros(count, dtype=bool)
            bits[positions] = True
        # Level 6: level 9 is ~30x slower on sparse packed bits for ~7 % fewer bytes.
        candidates.append((_PACKED, _deflate(np.packbits(bits).tobytes(), 6)))
    kind, payload = min(candidates, key=lambda c: len(c[1]))
    return _HEADER.pack(kind, len(payload)) + payload


_SMALL_DEFLATE = 255  # bytes: one block of under 256 symbols, whatever the memLevel


def _deflate(data: bytes, level: int) -> bytes:
    """`zlib.compress(data, level)`, byte for byte. A delta's streams are a few bytes, and compress() sets up
    deflate's full-size tables for them (hash heads cleared, a 128 KB symbol buffer: 3-4x the compressing); a
    smaller memLevel shrinks only the hash and symbol buffer, which changes nothing while the whole input fits
    in one block and every match candidate is still searched (under 256 symbols; tested against compress())."""
    if len(data) > _SMALL_DEFLATE:
        return zlib.compress(data, level)
    deflater = zlib.compressobj(level, zlib.DEFLATED, 15, 3)
    return deflater.compress(data) + deflater.flush()


def _decode_stream(data: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    """`count` bits from the stream at `offset`; returns them and the offset after the stream."""
    kind, raw, end = _stream_bytes(data, offset, count)
    if kind == _PACKED:
        return _packed_bits(raw, count), end
    bits = np.zeros(count, dtype=bool)
    bits[_gap_positions(raw, count)] = True
    return bits, end


def _stream_positions(data: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    """The sorted positions of the set bits of the stream at `offset`, and the offset after the stream."""
    kind, raw, end = _stream_bytes(data, offset, count)
    if kind == _PACKED:
        return np.flatnonzero(_packed_bits(raw, count)), end
    return _gap_positions(raw, count), end


def _stream_bytes(data: bytes, offset: int, count: int) -> tuple[int, bytes, int]:
    """The kind and inflated payload of the `count`-bit stream at `offset`, and the offset after it."""
    if len(data) < offset + _HEADER.size:
        raise MaskDecodeError("mask data ends inside a stream header")
    kind, length = _HEADER.unpack_from(data, offset)
    start, end = offset + _HEADER.size, offset + _HEADER.size + length
    if end > len(data):
        raise MaskDecodeError("mask data ends inside a stream")
    if kind not in (_PACKED, _GAPS):
        raise MaskDecodeError(f"unknown stream kind {kind}")
    try:
        inflater = zlib.decompressobj()
        # Bound the output: a hostile payload cannot expand past what the declared shape needs.
        raw = inflater.decompress(data[start:end], ((count + 7) // 8 if kind == _PACKED else 6 * count) + 1)
    except zlib.error as exc:
        raise MaskDecodeError(f"mask data does not decompress: {exc}") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        raise MaskDecodeError("mask stream is larger than its shape allows, or truncated")
    return kind, raw, end


def _stream_count(data: bytes, offset: int, count: int) -> tuple[int, int]:
    """How many of the `count` bits of the stream at `offset` are set, checked as `_decode_stream` checks them."""
    kind, raw, end = _stream_bytes(data, offset, count)
    if kind == _PACKED:
        _check_packed_length(raw, count)
        # unpackbits reads each byte's high bit first: the last byte's low bits past `count` are padding.
        return (int.from_bytes(raw, "big") >> (8 * len(raw) - count)).bit_count(), end
    if len(raw) > 256:
        return len(_gap_positions(raw, count)), end
    gaps = _unvarint_list(raw, count)  # a delta's few gaps: no arrays (numpy's per-call cost is the whole cost)
    if gaps and sum(gaps) + len(gaps) > count:  # the last set bit, sum(gap + 1) - 1, is past the end
        raise MaskDecodeError("gap stream points past the end of the mask")
    return len(gaps), end


def _check_packed_length(raw: bytes, count: int) -> None:
    if len(raw) != (count + 7) // 8:
        raise MaskDecodeError(f"mask stream holds {len(raw)} bytes, {count} bits need {(count + 7) // 8}")


def _packed_bits(raw: bytes, count: int) -> np.ndarray:
    _check_packed_length(raw, count)
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=count).astype(bool)


def _gap_positions(raw: bytes, count: int) -> np.ndarray:
    positions = np.cumsum(_unvarint(raw, count) + 1) - 1
    if len(positions) and positions[-1] >= count:
        raise MaskDecodeError("gap stream points past the end of the mask")
    return positions


# -- masks ---------------------------------------------------------------------------------------

def encode(mask: np.ndarray, previous: np.ndarray | None = None) -> EncodedMask:
    """Encode `mask`; with the previous epoch's mask of the same shape, as a delta against it."""
    bits = np.ascontiguousarray(mask, dtype=bool).ravel()
    if previous is None or previous.shape != mask.shape:
        return EncodedMask(tuple(mask.shape), KEY, _encode_stream(bits))
    before = np.ascontiguousarray(previous, dtype=bool).ravel()
    # Two streams: among the weights kept before, which were pruned; among those pruned before, which came back.
    # Built from the few bits that flipped: a flipped weight's rank among the kept (or the pruned) weights before.
    kept = int(np.count_nonzero(before))
    flipped = np.flatnonzero(before != bits)
    kept_below = _ranks(before, flipped)  # kept weights before each flipped one
    was_kept = before[flipped]
    pruned = kept_below[was_kept]
    regrown = (flipped - kept_below)[~was_kept]
    return EncodedMask(tuple(mask.shape), DELTA, _encode_positions(pruned, kept)
                       + _encode_positions(regrown, bits.size - kept))


def _ranks(bits: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """How many of `bits` are set before each of the strictly increasing `positions`: one summing pass over the
    bits between them (finding every set bit's position to search among them cost twice as much)."""
    if not len(positions):
        return np.zeros(0, dtype=np.int64)
    counts = np.add.reduceat(bits.view(np.uint8), positions, dtype=np.int32 if bits.size < 2**31 else np.int64)
    ranks = np.empty(len(positions), dtype=np.int64)
    ranks[0] = np.count_nonzero(bits[:positions[0]])
    np.cumsum(counts[:-1], out=ranks[1:])
    ranks[1:] += ranks[0]
    return ranks


def _checked_size(snapshot: EncodedMask) -> int:
    if snapshot.encoding not in (KEY, DELTA) or len(snapshot.shape) > 8 or any(n < 0 for n in snapshot.shape):
        raise MaskDecodeError(f"malformed mask snapshot: encoding {snapshot.encoding!r}, shape {list(snapshot.shape)}")
    size = snapshot.size
    if size > MAX_WEIGHTS:
        raise MaskDecodeError(f"mask of {size} weights is larger than prunescope stores")
    return size


def decode(snapshot: EncodedMask, previous: np.ndarray | None = None) -> np.ndarray:
    """The boolean mask a snapshot holds; a delta needs the previous epoch's mask (MaskDecodeError if wrong)."""
    if snapshot.encoding == KEY:
        bits, _ = _streams(snapshot, None, _decode_stream)
        return bits.reshape(snapshot.shape)
    base, before, kept = None, np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    if previous is not None and previous.shape == snapshot.shape:
        before = np.ascontiguousarray(previous, dtype=bool).ravel()
        kept = np.flatnonzero(before)
        base = Kept(tuple(previous.shape), len(kept))
    pruned, regrown = _streams(snapshot, base, _stream_positions)
    assert regrown is not None  # a delta's second stream
    bits = before.copy()
    bits[kept[pruned]] = False
    if len(regrown):
        # The r-th weight pruned before sits after every kept weight with at most r pruned ones ahead of it.
        bits[regrown + np.searchsorted(kept - np.arange(len(kept)), regrown, side="right")] = True
    return bits.reshape(snapshot.shape)


@dataclass(frozen=True)
class Kept:
    """What validating the next epoch's delta needs of a mask: its shape and how many weights it keeps."""

    shape: tuple[int, ...]
    count: int

    @classmethod
    def of(cls, mask: np.ndarray) -> Kept:
        return cls(tuple(mask.shape), int(np.count_nonzero(mask)))


def check(snapshot: EncodedMask, previous: Kept | None = None) -> Kept:
    """What `decode` would return, as a `Kept`, without building the mask: the same bytes raise the same
    MaskDecodeError. A delta's streams are bounded by the previous mask's kept and pruned counts alone, so an
    API validates a report's deltas from the counts it kept, not from the masks (a few streams of a few bytes
    instead of boolean arrays over every layer)."""
    first, second = _streams(snapshot, previous, _stream_count)
    if snapshot.encoding == KEY:
        return Kept(snapshot.shape, first)
    assert previous is not None and second is not None  # _streams refused a delta without its base
    return Kept(snapshot.shape, previous.count - first + second)


Stream = TypeVar("Stream")


def _streams(snapshot: EncodedMask, base: Kept | None,
             read: Callable[[bytes, int, int], tuple[Stream, int]]) -> tuple[Stream, Stream | None]:
    """A snapshot's streams through `read(data, offset, bits)`: a key frame's one stream of the mask's bits, or a
    delta's two — which of `base`'s kept weights were pruned, which of its pruned ones regrown — checked as the
    format requires (a known encoding and shape, a delta's base of the same shape, nothing after the streams)."""
    size = _checked_size(snapshot)
    second = None
    if snapshot.encoding == KEY:
        first, end = read(snapshot.data, 0, size)
    else:
        if base is None or base.shape != snapshot.shape:
            raise MaskDecodeError("a delta snapshot needs the previous epoch's mask of the same shape")
        first, offset = read(snapshot.data, 0, base.count)
        second, end = read(snapshot.data, offset, size - base.count)
    if end != len(snapshot.data):
        raise MaskDecodeError("trailing bytes after the mask streams")
    return first, second


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
