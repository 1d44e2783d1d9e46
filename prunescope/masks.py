"""Mask snapshot codec shared by worker and API: bit-packed, XOR-delta against the previous epoch, zlib."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

KEY = "key"  # the mask itself
DELTA = "delta"  # XOR with the same layer's mask at the previous epoch
KEYFRAME_EVERY = 16  # bounds how many deltas a read has to replay


class MaskDecodeError(ValueError):
    """A snapshot's bytes do not decode to a mask of its declared shape."""


@dataclass(frozen=True)
class EncodedMask:
    shape: tuple[int, ...]
    encoding: str
    data: bytes

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
        if encoding not in (KEY, DELTA) or any(n < 0 for n in shape) or len(shape) > 8:
            raise MaskDecodeError(f"malformed mask snapshot: encoding {encoding!r}, shape {shape}")
        return cls(shape, encoding, data)


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.ascontiguousarray(mask, dtype=bool).ravel())


def encode(mask: np.ndarray, previous: np.ndarray | None = None) -> EncodedMask:
    """Encode `mask`; with the previous epoch's mask of the same shape, as a delta against it."""
    packed = _pack(mask)
    if previous is not None and previous.shape == mask.shape:
        packed = np.bitwise_xor(packed, _pack(previous))
        encoding = DELTA
    else:
        encoding = KEY
    return EncodedMask(tuple(mask.shape), encoding, zlib.compress(packed.tobytes(), 9))


def check_size(snapshot: EncodedMask) -> bytes:
    """The snapshot's packed bits, checked to match its declared shape (raises MaskDecodeError)."""
    size = int(np.prod(snapshot.shape)) if snapshot.shape else 1
    try:
        # Bound the decompressed size: a hostile payload cannot expand past the declared shape.
        inflater = zlib.decompressobj()
        raw = inflater.decompress(snapshot.data, (size + 7) // 8 + 1)
    except zlib.error as exc:
        raise MaskDecodeError(f"mask data does not decompress: {exc}") from exc
    if len(raw) != (size + 7) // 8 or inflater.unconsumed_tail:
        raise MaskDecodeError(f"mask data holds {len(raw)} bytes, shape {list(snapshot.shape)} needs {(size + 7) // 8}")
    return raw


def decode(snapshot: EncodedMask, previous: np.ndarray | None = None) -> np.ndarray:
    """The boolean mask a snapshot holds; a delta needs the previous epoch's mask."""
    size = int(np.prod(snapshot.shape)) if snapshot.shape else 1
    bits = np.frombuffer(check_size(snapshot), dtype=np.uint8)
    if snapshot.encoding == DELTA:
        if previous is None or previous.shape != snapshot.shape:
            raise MaskDecodeError("a delta snapshot needs the previous epoch's mask of the same shape")
        bits = np.bitwise_xor(bits, _pack(previous))
    return np.unpackbits(bits, count=size).astype(bool).reshape(snapshot.shape)
