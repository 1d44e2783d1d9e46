"""The mask snapshot codec: exact round trips, small snapshots, and hostile bytes refused."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

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


def _reference_varint(values: np.ndarray) -> bytes:
    """LEB128, one integer at a time: the format the vectorised writer must keep."""
    out = bytearray()
    for value in (int(v) for v in values):
        while True:
            low, value = value & 0x7F, value >> 7
            out.append(low | (0x80 if value else 0))
            if not value:
                break
    return bytes(out)


def _reference_stream(bits: np.ndarray) -> bytes:
    """The bit-stream format as first written (boolean arrays throughout): what stored snapshots hold."""
    density = float(bits.mean()) if bits.size else 0.0
    candidates = []
    if density < 0.15:
        idx = np.flatnonzero(bits)
        candidates.append((1, zlib.compress(_reference_varint(np.diff(idx, prepend=-1) - 1), 9)))
    if density >= 0.05:
        candidates.append((0, zlib.compress(np.packbits(bits).tobytes(), 6)))
    kind, payload = min(candidates, key=lambda c: len(c[1]))
    return struct.pack("<BI", kind, len(payload)) + payload


@settings(max_examples=80, deadline=None)
@given(rows=st.integers(0, 40), cols=st.integers(1, 70),
       density=st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.15, 0.5, 1.0]),
       churn=st.sampled_from([0.0, 0.001, 0.02, 0.3, 1.0]), seed=st.integers(0, 2**16))
def test_snapshots_are_byte_for_byte_the_stored_format(rows: int, cols: int, density: float, churn: float,
                                                       seed: int) -> None:
    # Snapshots already stored decode with today's reader, and today's writer writes the same bytes: the delta
    # is built from the flipped bits' ranks, not from boolean arrays over the whole layer.
    rng = np.random.default_rng(seed)
    before = rng.random((rows, cols)) < density
    after = before ^ (rng.random(before.shape) < churn)
    flat_before, flat_after = before.ravel(), after.ravel()
    assert maskcodec.encode(before).data == _reference_stream(flat_before)
    expected = _reference_stream(~flat_after[flat_before]) + _reference_stream(flat_after[~flat_before])
    assert maskcodec.encode(after, before).data == expected
    wide = rng.integers(0, 2**34, 50)  # gaps of up to five LEB128 bytes
    assert maskcodec._varint(wide) == _reference_varint(wide)


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



@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=40) | st.lists(st.integers(0, 2**40), max_size=30).map(
    lambda values: maskcodec._varint(np.array(values, dtype=np.int64))), limit=st.integers(0, 40))
def test_the_small_gap_reader_agrees_with_the_vectorised_one(raw: bytes, limit: int) -> None:
    """A delta's few gap bytes are read in plain Python, larger streams with numpy: same values, same refusals."""
    def read(reader: Callable[[bytes, int], np.ndarray]) -> list[int] | str:
        try:
            return [int(v) for v in reader(raw, limit)]
        except maskcodec.MaskDecodeError as exc:
            return str(exc)

    assert read(maskcodec._unvarint_small) == read(maskcodec._unvarint_vectorised)


def _outcome(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except maskcodec.MaskDecodeError as exc:
        return f"refused: {exc}"


def _decoded_count(snapshot: maskcodec.EncodedMask, previous: np.ndarray | None) -> maskcodec.Kept:
    return maskcodec.Kept.of(maskcodec.decode(snapshot, previous))


@settings(max_examples=300, deadline=None)
@given(rows=st.integers(0, 12), cols=st.integers(1, 30),
       density=st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]), churn=st.sampled_from([0.0, 0.01, 0.2, 1.0]),
       seed=st.integers(0, 2**16), base_flips=st.integers(0, 3),
       damage=st.none() | st.tuples(st.integers(0, 200), st.integers(0, 255)),
       cut=st.none() | st.integers(0, 200), extra=st.binary(max_size=3))
def test_checking_a_snapshot_by_counts_agrees_with_decoding_it(rows: int, cols: int, density: float, churn: float,
                                                               seed: int, base_flips: int,
                                                               damage: tuple[int, int] | None, cut: int | None,
                                                               extra: bytes) -> None:
    # The API validates a report's deltas from the previous mask's kept count alone: for any bytes (valid,
    # damaged, cut short, padded) and any base (the right one, or one that keeps a different number of weights)
    # it must accept exactly what decode accepts, with the same error, and count the weights decode keeps.
    rng = np.random.default_rng(seed)
    before = rng.random((rows, cols)) < density
    after = before ^ (rng.random(before.shape) < churn)
    base = before.copy()
    base.flat[rng.choice(base.size, min(base_flips, base.size), replace=False)] ^= True
    for snapshot, previous in ((maskcodec.encode(after), None), (maskcodec.encode(after, before), base)):
        data = bytearray(snapshot.data)
        if damage is not None and data:
            data[damage[0] % len(data)] = damage[1]
        if cut is not None:
            data = data[:cut]
        bent = maskcodec.EncodedMask(snapshot.shape, snapshot.encoding, bytes(data) + extra)
        decoded = _outcome(_decoded_count, bent, previous)
        kept = None if previous is None else maskcodec.Kept.of(previous)
        assert _outcome(maskcodec.check, bent, kept) == decoded


def test_checking_a_delta_needs_a_base_of_its_shape() -> None:
    mask = np.ones((4, 4), dtype=bool)
    delta = maskcodec.encode(mask, mask)
    assert maskcodec.check(delta, maskcodec.Kept((4, 4), 16)) == maskcodec.Kept((4, 4), 16)
    for base in (None, maskcodec.Kept((2, 8), 16)):
        with pytest.raises(maskcodec.MaskDecodeError, match="same shape"):
            maskcodec.check(delta, base)
    with pytest.raises(maskcodec.MaskDecodeError):
        maskcodec.check(maskcodec.EncodedMask((2**20, 2**20), maskcodec.KEY, b""))


@settings(max_examples=60, deadline=None)
@given(shape=st.sampled_from([(0, 5), (1, 1), (7, 9), (40, 30)]), density=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
       churn=st.sampled_from([0.0, 0.01, 0.2, 1.0]), seed=st.integers(0, 2**16), epochs=st.integers(1, 40),
       skip=st.none() | st.integers(2, 40))
def test_the_encoder_writes_the_chain_plain_encoding_writes(shape: tuple[int, int], density: float, churn: float,
                                                            seed: int, epochs: int, skip: int | None) -> None:
    # The worker's and the SDK's encoder: its snapshots are the bytes encode() writes against the previous epoch's
    # mask, with key frames every KEYFRAME_EVERY epochs and after an epoch without masks.
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < density
    encoder, previous = maskcodec.MaskEncoder(), None
    for epoch in range(1, epochs + 1):
        if epoch == skip:
            continue  # an epoch without masks: the next one is a key frame
        mask = mask ^ (rng.random(shape) < churn)
        chained = previous is not None and epoch % maskcodec.KEYFRAME_EVERY != 1
        expected = maskcodec.encode(mask, previous if chained else None).to_json()
        assert encoder.encode(epoch, {"w": mask}) == {"w": expected}, epoch
        previous = mask if epoch + 1 != skip else None


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=maskcodec._SMALL_DEFLATE + 40)
       | st.lists(st.sampled_from([0, 1, 2, 3, 127, 128, 255]), max_size=maskcodec._SMALL_DEFLATE + 40).map(bytes),
       level=st.sampled_from([6, 9]))
def test_small_streams_deflate_to_compress_s_bytes(data: bytes, level: int) -> None:
    assert maskcodec._deflate(data, level) == zlib.compress(data, level)
