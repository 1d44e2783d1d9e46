"""The mask snapshot codec: exact round trips, small snapshots, and hostile bytes refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunescope import maskcodec


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 40), cols=st.integers(1, 70), density=st.floats(0, 1), churn=st.floats(0, 0.5),
       seed=st.integers(0, 2**16))
def test_key_frames_and_deltas_round_trip_exactly(rows: int, cols: int, density: float, churn: float,
                                                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    before = rng.random((rows, cols)) < density
    after = before ^ (rng.random(before.shape) < churn)
    key = maskcodec.encode(before)
    assert key.encoding == maskcodec.KEY
    assert np.array_equal(maskcodec.decode(key), before)
    delta = maskcodec.encode(after, before)
    assert delta.encoding == maskcodec.DELTA
    assert np.array_equal(maskcodec.decode(delta, before), after)
    assert np.array_equal(maskcodec.decode(maskcodec.EncodedMask.from_json(delta.to_json()), before), after)


def test_sparse_masks_and_small_changes_take_a_fraction_of_a_bit_per_weight() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((300, 784)) < 0.02  # 98 % sparse
    assert len(maskcodec.encode(mask).data) * 8 / mask.size < 0.2
    churned = mask.copy()
    churned.flat[rng.choice(np.flatnonzero(mask), 200, replace=False)] = False  # RigL-like: drop 200...
    churned.flat[rng.choice(np.flatnonzero(~mask), 200, replace=False)] = True  # ...regrow 200
    assert len(maskcodec.encode(churned, mask).data) * 8 / mask.size < 0.03  # XOR + zlib: 0.05
    assert len(maskcodec.encode(mask, mask).data) < 40  # unchanged: a few bytes


def test_a_delta_needs_the_right_previous_mask() -> None:
    mask = np.ones((4, 4), dtype=bool)
    delta = maskcodec.encode(mask, mask)
    with pytest.raises(maskcodec.MaskDecodeError):
        maskcodec.decode(delta, None)
    with pytest.raises(maskcodec.MaskDecodeError):
        maskcodec.decode(delta, np.ones((2, 8), dtype=bool))
    rng = np.random.default_rng(1)
    before, after = rng.random((8, 8)) < 0.5, rng.random((8, 8)) < 0.5
    packed_delta = maskcodec.encode(after, before)
    with pytest.raises(maskcodec.MaskDecodeError):
        maskcodec.decode(packed_delta, ~before)  # its streams' lengths do not fit this base


def _stream(kind: int, payload: bytes) -> bytes:
    return struct.pack("<BI", kind, len(payload)) + payload


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        _stream(0, b"not zlib"),
        _stream(0, zlib.compress(b"\x00" * 10_000_000)),  # a zip bomb for a 16-weight mask
        _stream(0, zlib.compress(b"\xff")),  # too few bytes for 16 bits
        _stream(1, zlib.compress(bytes([200, 1]))),  # a gap pointing past the end
        _stream(1, zlib.compress(bytes([0x80]))),  # a truncated varint
        _stream(9, zlib.compress(b"\x00\x00")),  # unknown stream kind
        _stream(0, zlib.compress(b"\xff\xff")) + b"extra",  # trailing bytes
        struct.pack("<BI", 0, 1000) + b"short",  # length beyond the data
    ],
)
def test_hostile_snapshots_are_refused_without_expanding(data: bytes) -> None:
    with pytest.raises(maskcodec.MaskDecodeError):
        maskcodec.decode(maskcodec.EncodedMask((4, 4), maskcodec.KEY, data))


def test_malformed_json_snapshots_are_refused() -> None:
    for doc in ({}, {"shape": [2], "encoding": "key", "data": "***"}, {"shape": "x", "encoding": "key", "data": ""}):
        with pytest.raises(maskcodec.MaskDecodeError):
            maskcodec.EncodedMask.from_json(doc)
    with pytest.raises(maskcodec.MaskDecodeError):
        maskcodec.decode(maskcodec.EncodedMask((2, 2), "gzip", b""))
    with pytest.raises(maskcodec.MaskDecodeError):
        maskcodec.decode(maskcodec.EncodedMask((2**20, 2**20), maskcodec.KEY, b""))
