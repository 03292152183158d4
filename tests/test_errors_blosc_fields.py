"""Damaged Blosc headers: fields that overflow int32 arithmetic, bad block offsets, stream sizes,
block sizes and type sizes, in the chunks of a native array.

Every case must give ``zarrcrop.ChunkError`` naming the chunk or, where the damaged field is
redundant, the correct data: never a crash or silently wrong values. Whole chunk files damaged
(truncated, garbage, replaced): tests/test_errors_corrupt_chunks.py; Blosc headers of chunks
near 2 GiB: tests/test_codecs_large_chunks.py.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop

# Every array here is meant to be read natively: strict mode (tests/conftest.py).
pytestmark = pytest.mark.native

SHAPE = (64, 64)
CHUNKS = (32, 32)  # 4096 bytes of int32 per chunk
KEY = "1.0"
AS_ZARR = "as zarr-python"  # a read that succeeds must equal zarr-python's read of the file
REGION = (slice(32, 64), slice(0, 32))


def _data() -> np.ndarray:
    return ((np.arange(SHAPE[0] * SHAPE[1]) // 9) * 7 - 300).astype(np.int32).reshape(SHAPE)


def _build(tmp_path: Path, cname: str, shuffle: int) -> tuple[Path, bytes]:
    path = tmp_path / f"{cname}-{shuffle}.zarr"
    za = zarr.create_array(
        store=str(path), shape=SHAPE, chunks=CHUNKS, dtype="int32", zarr_format=2,
        compressors=numcodecs.Blosc(cname, 5, shuffle, blocksize=256), filters=None,
        fill_value=0,
    )  # fmt: skip
    za[...] = _data()
    raw = (path / KEY).read_bytes()
    assert _i32(raw, 8) == 256, "expected 16 blocks of 256 bytes"
    assert not raw[2] & 0x02, "chunk must really be compressed"
    return path, raw


def _i32(raw: bytes, off: int) -> int:
    return struct.unpack_from("<i", raw, off)[0]


def _set_i32(raw: bytes, off: int, value: int) -> bytes:
    buf = bytearray(raw)
    buf[off : off + 4] = struct.pack("<I", value & 0xFFFFFFFF)
    return bytes(buf)


def _bstart(raw: bytes, i: int) -> int:
    return _i32(raw, 16 + 4 * i)


# name -> (function(raw) -> corrupted raw, must_raise). With must_raise False the damaged
# field may be redundant: the read may then succeed but must return the original values.
CASES = {
    # stream sizes at the start of block 0's / block 3's streams
    "csize-int32-max": (lambda b: _set_i32(b, _bstart(b, 0), 0x7FFFFFFF), True),
    "csize-int32-min": (lambda b: _set_i32(b, _bstart(b, 0), -(2**31)), True),
    "csize-minus-one": (lambda b: _set_i32(b, _bstart(b, 0), -1), True),
    "csize-past-end": (lambda b: _set_i32(b, _bstart(b, 3), len(b)), True),
    "csize-max-last-block": (lambda b: _set_i32(b, _bstart(b, 7), 0x7FFFFFFF), True),
    # block offsets
    "bstart-past-end": (lambda b: _set_i32(b, 16, len(b) + 100), True),
    "bstart-at-end": (lambda b: _set_i32(b, 16 + 4 * 7, len(b)), True),
    "bstart-int32-max": (lambda b: _set_i32(b, 16 + 4 * 2, 0x7FFFFFFF), True),
    "bstart-negative": (lambda b: _set_i32(b, 16 + 4 * 1, -8), True),
    "bstart-into-header": (lambda b: _set_i32(b, 16, 4), True),
    # blocksize
    "blocksize-zero": (lambda b: _set_i32(b, 8, 0), True),
    "blocksize-negative": (lambda b: _set_i32(b, 8, -256), True),
    "blocksize-larger-than-nbytes": (lambda b: _set_i32(b, 8, 8192), False),
    "blocksize-int32-max": (lambda b: _set_i32(b, 8, 0x7FFFFFFF), False),
    "blocksize-one": (lambda b: _set_i32(b, 8, 1), True),
    "blocksize-not-typesize-multiple": (lambda b: _set_i32(b, 8, 254), True),
    # nbytes / cbytes with int32 overflow
    "nbytes-negative": (lambda b: _set_i32(b, 4, -4096), True),
    "nbytes-int32-min": (lambda b: _set_i32(b, 4, -(2**31)), True),
    "cbytes-negative": (lambda b: _set_i32(b, 12, -1), True),
    "cbytes-int32-min": (lambda b: _set_i32(b, 12, -(2**31)), True),
    # typesize
    "typesize-zero": (lambda b: b[:3] + b"\x00" + b[4:], True),
    # A typesize other than the item size is valid Blosc (zarr v3 records it apart from the
    # data type): the bytes then unshuffle differently, to what zarr-python reads too.
    "typesize-mismatched-3": (lambda b: b[:3] + b"\x03" + b[4:], AS_ZARR),
    "typesize-mismatched-8": (lambda b: b[:3] + b"\x08" + b[4:], AS_ZARR),
    "typesize-255": (lambda b: b[:3] + b"\xff" + b[4:], AS_ZARR),
}

CODECS = {
    "lz4-shuffle": ("lz4", numcodecs.Blosc.SHUFFLE),
    "blosclz-noshuffle": ("blosclz", numcodecs.Blosc.NOSHUFFLE),
    "zstd-bitshuffle": ("zstd", numcodecs.Blosc.BITSHUFFLE),
}


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("case", CASES)
def test_blosc_field_corruption(tmp_path, codec, case):
    path, raw = _build(tmp_path, *CODECS[codec])
    corrupt, must_raise = CASES[case]
    bad = corrupt(raw)
    assert bad != raw
    (path / KEY).write_bytes(bad)
    ca = zarrcrop.open(path)
    assert ca.native, ca.fallback_reason
    expected = _data()
    if must_raise == AS_ZARR:
        expected = zarr.open_array(str(path), mode="r")[...]
        must_raise = False
    selections = [..., REGION, (slice(40, 41), slice(3, 9)), (slice(63, 31, -3), slice(0, 32, 5))]
    for sel in selections:
        try:
            got = ca[sel]
        except zarrcrop.ChunkError as exc:
            assert KEY in str(exc), str(exc)
            continue
        assert not must_raise, f"{case}: read {sel} succeeded"
        np.testing.assert_array_equal(got, expected[sel], err_msg=f"{case}: wrong values")
    starts = np.array([[30, 0], [40, 20], [0, 40]], dtype=np.int64)
    try:
        got = ca.read_crops(starts, (8, 8))
    except zarrcrop.ChunkError as exc:
        assert KEY in str(exc), str(exc)
    else:
        assert not must_raise, f"{case}: read_crops succeeded"
        for n, (r, c) in enumerate(starts):
            np.testing.assert_array_equal(got[n], expected[r : r + 8, c : c + 8])
    # the other chunks still read
    np.testing.assert_array_equal(ca[0:32, :], expected[0:32, :])
