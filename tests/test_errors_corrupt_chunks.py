"""Corrupt or truncated chunk files raise zarrcrop.ChunkError naming the array and chunk; the
other chunks still read, a repaired chunk reads again, a deleted one reads as fill value.

Damaged Blosc header fields: tests/test_errors_blosc_fields.py; bad metadata:
tests/test_errors_metadata.py; a codec's own checks (crc32c, zstd, gzip): tests/test_codecs.py;
shard indexes: tests/test_sharding.py; I/O errors: tests/test_io_faults.py.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import ArraySpec, Blosc, assert_same, create_array

# Every array here is meant to be read natively: strict mode (tests/conftest.py).
pytestmark = pytest.mark.native

SHAPE = (16, 24)
CHUNKS = (8, 12)
CHUNK_NBYTES = 8 * 12 * 4  # int32

LAYOUTS = {
    "v2-blosc-zstd": (
        ArraySpec(2, SHAPE, CHUNKS, "int32", Blosc("zstd", 5, "shuffle"), -1),
        "1.0",
    ),
    "v2-no-compressor": (ArraySpec(2, SHAPE, CHUNKS, "int32", None, -1), "1.0"),
    "v3-bytes-blosc-lz4": (
        ArraySpec(
            3, SHAPE, CHUNKS, "int32", Blosc("lz4", 5, "shuffle"), -1,
            {"name": "default", "separator": "/"},
        ),
        "c/1/0",
    ),
    "v2-blosc-lz4hc-slash-separator": (
        ArraySpec(
            2, SHAPE, CHUNKS, "int32", Blosc("lz4hc", 9, "bitshuffle"), -1,
            {"name": "v2", "separator": "/"},
        ),
        "1/0",
    ),
    "v3-bytes-blosc-zlib-dot-separator": (
        ArraySpec(
            3, SHAPE, CHUNKS, "int32", Blosc("zlib", 1, "noshuffle"), -1,
            {"name": "default", "separator": "."},
        ),
        "c.1.0",
    ),
    "v3-bytes-only": (
        ArraySpec(3, SHAPE, CHUNKS, "int32", None, -1, {"name": "v2", "separator": "."}),
        "1.0",
    ),
}  # fmt: skip

CORRUPT_REGION = (slice(8, 16), slice(0, 12))  # the chunk at grid position (1, 0)

TOUCHING = {
    "whole-array": ...,
    "single-element": (12, 3),
    "crop-spanning-chunks": (slice(6, 10), slice(10, 14)),
    "corrupt-chunk-exactly": CORRUPT_REGION,
    "strided-negative": (slice(None, None, -3), slice(11, None, -5)),
}
NOT_TOUCHING = {
    "top-rows": (slice(0, 8),),
    "right-bottom": (slice(8, 16), slice(12, 24)),
    "element": (3, 20),
    "row-8-right": (8, slice(12, None)),
}


def _set_u32(raw: bytes, offset: int, value: int) -> bytes:
    buf = bytearray(raw)
    buf[offset : offset + 4] = struct.pack("<I", value & 0xFFFFFFFF)
    return bytes(buf)


def _u32(raw: bytes, offset: int) -> int:
    return struct.unpack_from("<I", raw, offset)[0]


def _set_byte(raw: bytes, offset: int, value: int) -> bytes:
    buf = bytearray(raw)
    buf[offset] = value
    return bytes(buf)


def _garbage(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# name -> function(original chunk bytes) -> new chunk bytes
BLOSC_CORRUPTIONS = {
    "truncated-half": lambda b: b[: len(b) // 2],
    "truncated-by-one": lambda b: b[:-1],
    "empty-file": lambda b: b"",
    "shorter-than-header": lambda b: b[:10],
    "header-only": lambda b: b[:16],
    "version-byte": lambda b: _set_byte(b, 0, 0xFF),
    "typesize-zero": lambda b: _set_byte(b, 3, 0),
    "nbytes-too-large": lambda b: _set_u32(b, 4, 2 * _u32(b, 4)),
    "nbytes-too-small": lambda b: _set_u32(b, 4, _u32(b, 4) // 2),
    "nbytes-huge": lambda b: _set_u32(b, 4, 0x7FFFFFF0),
    "cbytes-too-large": lambda b: _set_u32(b, 12, _u32(b, 12) + 16),
    "cbytes-too-small": lambda b: _set_u32(b, 12, _u32(b, 12) - 1),
    "cbytes-huge": lambda b: _set_u32(b, 12, 0xFFFFFFFF),
    "garbage-payload": lambda b: b[:16] + _garbage(len(b) - 16, seed=1),
    "garbage-everything": lambda b: _garbage(len(b), seed=2),
    "trailing-junk": lambda b: b + b"trailing junk",
}
RAW_CORRUPTIONS = {
    "truncated-half": lambda b: b[: len(b) // 2],
    "truncated-by-one": lambda b: b[:-1],
    "too-long-by-one": lambda b: b + b"\x00",
    "too-long-by-itemsize": lambda b: b + b"\x00" * 4,
    "double-length": lambda b: b + b,
    "empty-file": lambda b: b"",
    "shorter-than-16-bytes": lambda b: b[:10],
}

CASES = [
    pytest.param(layout, name, fn, id=f"{layout}-{name}")
    for layout in LAYOUTS
    for name, fn in (BLOSC_CORRUPTIONS if LAYOUTS[layout][0].codec else RAW_CORRUPTIONS).items()
]


def _data() -> np.ndarray:
    # low entropy so that Blosc really compresses (not a memcpy'd chunk)
    return ((np.arange(SHAPE[0] * SHAPE[1]) // 7) * 3 - 50).astype(np.int32).reshape(SHAPE)


def _build(tmp_path: Path, layout: str):
    spec, key = LAYOUTS[layout]
    path = tmp_path / f"{layout}.zarr"
    create_array(path, spec, _data())
    chunk_file = path / key
    assert chunk_file.is_file()
    raw = chunk_file.read_bytes()
    if spec.codec is None:
        assert len(raw) == CHUNK_NBYTES
    else:
        assert _u32(raw, 4) == CHUNK_NBYTES
        assert not raw[2] & 0x02, "chunk is memcpy'd; test data should be compressible"
    return path, key, chunk_file, raw


def _assert_names_chunk(exc: BaseException, path: Path, key: str) -> None:
    message = str(exc)
    assert key in message, f"chunk key {key!r} not in message: {message!r}"
    assert str(path) in message or os.path.realpath(path) in message, (
        f"array path {str(path)!r} not in message: {message!r}"
    )


def _check_touching_reads_raise(path: Path, key: str, errors=(zarrcrop.ChunkError,)) -> None:
    ca = zarrcrop.open(path)
    assert ca.native, ca.fallback_reason
    for sel in TOUCHING.values():
        with pytest.raises(errors) as info:
            ca[sel]
        _assert_names_chunk(info.value, path, key)
    out = np.zeros((8, 12), dtype=np.int32)
    with pytest.raises(errors) as info:
        ca.read(CORRUPT_REGION, out=out)
    _assert_names_chunk(info.value, path, key)
    # many chunks read by several native threads: the error still propagates
    zarrcrop.set_num_threads(4)
    with pytest.raises(errors):
        ca[...]
    zarrcrop.set_num_threads(1)
    with pytest.raises(errors):
        ca[...]


def _check_untouched_reads_work(path: Path) -> None:
    ca = zarrcrop.open(path)
    expected = _data()
    for sel in NOT_TOUCHING.values():
        assert_same(ca[sel], expected[sel])
    out = np.empty((8, 24), dtype=np.int32)
    assert ca.read((slice(0, 8),), out=out) is out
    assert_same(out, expected[:8])


def test_intact_arrays_read_correctly(tmp_path):
    for layout in LAYOUTS:
        path, *_ = _build(tmp_path, layout)
        ca = zarrcrop.open(path)
        assert ca.native, ca.fallback_reason
        assert_same(ca[...], _data())


@pytest.mark.parametrize(("layout", "name", "corrupt"), CASES)
def test_corrupt_chunk_raises_chunk_error(tmp_path, layout, name, corrupt):
    path, key, chunk_file, raw = _build(tmp_path, layout)
    corrupted = corrupt(raw)
    assert corrupted != raw
    chunk_file.write_bytes(corrupted)

    _check_touching_reads_raise(path, key)
    _check_untouched_reads_work(path)


def test_chunk_error_is_value_error(tmp_path):
    path, _, chunk_file, raw = _build(tmp_path, "v2-blosc-zstd")
    chunk_file.write_bytes(raw[:5])
    with pytest.raises(ValueError):
        zarrcrop.open(path)[...]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_chunk_replaced_by_directory(tmp_path, layout):
    path, key, chunk_file, _ = _build(tmp_path, layout)
    chunk_file.unlink()
    chunk_file.mkdir()
    (chunk_file / "inner").write_bytes(b"x" * 64)

    _check_touching_reads_raise(path, key, errors=(zarrcrop.ChunkError, OSError))
    _check_untouched_reads_work(path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_array_usable_after_chunk_repaired(tmp_path, layout):
    path, _, chunk_file, raw = _build(tmp_path, layout)
    ca = zarrcrop.open(path)
    chunk_file.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(zarrcrop.ChunkError):
        ca[CORRUPT_REGION]
    chunk_file.write_bytes(raw)
    assert_same(ca[...], _data())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_deleted_chunk_reads_fill_value(tmp_path, layout):
    """A missing chunk is not an error: it reads as fill_value."""
    path, _, chunk_file, _ = _build(tmp_path, layout)
    chunk_file.unlink()
    expected = _data()
    expected[CORRUPT_REGION] = -1
    assert_same(zarrcrop.open(path)[...], expected)


def test_corrupt_chunk_in_group_names_array_path(tmp_path):
    group_path = tmp_path / "g.zarr"
    group = zarr.open_group(str(group_path), mode="w", zarr_format=2)
    key = LAYOUTS["v2-blosc-zstd"][1]
    za = group.create_array(
        "lr/720p/rgb", shape=SHAPE, chunks=CHUNKS, dtype="int32", fill_value=-1,
        compressors=numcodecs.Blosc("zstd", 5, numcodecs.Blosc.SHUFFLE),
    )  # fmt: skip
    za[...] = _data()
    array_path = group_path / "lr" / "720p" / "rgb"
    (array_path / key).write_bytes(b"\x02\x01")
    ca = zarrcrop.open_group(group_path)["lr/720p/rgb"]
    with pytest.raises(zarrcrop.ChunkError) as info:
        ca[12, 3]
    message = str(info.value)
    assert key in message
    assert "lr/720p/rgb" in message, message
