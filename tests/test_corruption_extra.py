"""More hostile inputs: Blosc fields that overflow int32 arithmetic, bad block offsets and sizes,
bad metadata (negative or overflowing shapes and chunk shapes), bad read_crops arguments.

Complements test_corruption.py, test_sharding.py, test_api.py and test_out.py. Every case must
give a clean Python exception (for chunks: ``zarrcrop.ChunkError`` naming the chunk) or, where
the damaged field is redundant, the correct data: never a crash or silently wrong values.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop

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


# ------------------------------------------------------------------------------ metadata


def _write_zarray(path: Path, shape, chunks) -> None:
    path.mkdir()
    meta = {
        "zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": "<i4",
        "compressor": None, "fill_value": 0, "order": "C", "filters": None,
    }  # fmt: skip
    (path / ".zarray").write_text(json.dumps(meta))


def _write_zarr_json(path: Path, shape, chunks) -> None:
    path.mkdir()
    meta = {
        "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }  # fmt: skip
    (path / "zarr.json").write_text(json.dumps(meta))


BAD_METADATA = {
    "negative-shape": ([-4, 8], [2, 2]),
    "negative-chunks": ([4, 8], [-2, 2]),
    "zero-chunks": ([4, 8], [0, 2]),
    "shape-over-int64": ([2**64, 8], [2, 2]),
    "chunks-over-int64": ([4, 8], [2**64, 2]),
    "chunk-bytes-overflow": ([2**62, 2**62], [2**62, 2**62]),
    "grid-overflow": ([2**62, 2**62], [1, 1]),
    "non-integer-shape": ([4.5, 8], [2, 2]),
    "ndim-mismatch": ([4, 8], [2]),
}


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("case", BAD_METADATA)
def test_bad_metadata_gives_clean_exception(tmp_path, fmt, case):
    shape, chunks = BAD_METADATA[case]
    path = tmp_path / "bad.zarr"
    (_write_zarray if fmt == 2 else _write_zarr_json)(path, shape, chunks)
    try:
        ca = zarrcrop.open(path)
    except Exception:
        return  # a clean Python exception (from zarr-python or zarrcrop)
    # it opened: small reads give values or a clean exception, never a crash
    for sel in [(0, 0), (slice(0, 2), slice(0, 2))]:
        try:
            got = ca[sel]
        except Exception:
            continue
        assert np.all(np.asarray(got) == 0)
    try:
        ca.read_crops(np.zeros((1, 2), dtype=np.int64), (2, 2))
    except Exception:
        pass


# ------------------------------------------------------------------------------ read_crops args


BAD_CROP_ARGS = {
    "starts-1d": (np.zeros(2, dtype=np.int64), (2, 2), None),
    "starts-wrong-ndim": (np.zeros((3, 3), dtype=np.int64), (2, 2), None),
    "shape-wrong-ndim": (np.zeros((3, 2), dtype=np.int64), (2, 2, 2), None),
    "shape-negative": (np.zeros((3, 2), dtype=np.int64), (-2, 2), None),
    "out-wrong-shape": (np.zeros((3, 2), dtype=np.int64), (2, 2), np.zeros((3, 2, 3), "int16")),
    "out-wrong-dtype": (np.zeros((3, 2), dtype=np.int64), (2, 2), np.zeros((3, 2, 2), "int32")),
    "out-too-few-crops": (np.zeros((3, 2), dtype=np.int64), (2, 2), np.zeros((2, 2, 2), "int16")),
    "out-non-contiguous": (
        np.zeros((3, 2), dtype=np.int64), (2, 2), np.zeros((3, 2, 4), "int16")[:, :, ::2],
    ),
    "out-read-only": (
        np.zeros((3, 2), dtype=np.int64), (2, 2),
        np.lib.stride_tricks.as_strided(np.zeros((3, 2, 2), "int16"), writeable=False),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_CROP_ARGS)
@pytest.mark.parametrize("boundary", ["error", "fill"])
def test_bad_read_crops_arguments_raise(small, case, boundary):
    starts, shape, out = BAD_CROP_ARGS[case]
    before = None if out is None else out.copy()
    with pytest.raises((ValueError, TypeError, IndexError, OverflowError)):
        small.read_crops(starts, shape, out=out, boundary=boundary)
    if out is not None:
        np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize(
    "sel", [(slice(0, 5, 0),), (slice(None), slice(None, None, 0)), (0, slice(3, 1, 0))]
)
def test_zero_step_in_read_with_out_raises(small, sel):
    out = np.zeros((10, 12), dtype=np.int16)
    with pytest.raises(ValueError):
        small.read(sel, out=out)
    assert not out.any()


# Shapes, chunk shapes and shard shapes at and past the int64 / uint64 limits. zarr-python
# opens most of them and reads missing chunks as fill values; zarrcrop must then read the same
# (falling back to zarr-python where the native reader's int64 / 2 GiB limits do not hold) and
# never fail with a raw pybind11 TypeError. Metadata zarr-python rejects must still be rejected.
HUGE = [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**65, -1, -(2**63), -(2**63) - 1, 2**62, 2**31]


def _write_sharded_zarr_json(path: Path, shape, shard, inner) -> None:
    _write_zarr_json(path, shape, shard)
    meta = json.loads((path / "zarr.json").read_text())
    meta["codecs"] = [
        {"name": "sharding_indexed", "configuration": {
            "chunk_shape": inner, "codecs": meta["codecs"], "index_location": "end",
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                             {"name": "crc32c"}],
        }},
    ]  # fmt: skip
    (path / "zarr.json").write_text(json.dumps(meta))


def _huge_cases():
    for value in HUGE:
        for fmt in (2, 3):
            yield pytest.param(fmt, [value, 8], [2, 2], None, id=f"v{fmt}-shape-{value}")
            yield pytest.param(fmt, [4, 8], [value, 2], None, id=f"v{fmt}-chunks-{value}")
        yield pytest.param(3, [value, 8], [4, 4], [2, 2], id=f"sharded-shape-{value}")
        yield pytest.param(3, [4, 8], [value, 4], [2, 4], id=f"sharded-shard-{value}")
        yield pytest.param(3, [4, 8], [4, 4], [value, 2], id=f"sharded-inner-{value}")


@pytest.mark.parametrize(("fmt", "shape", "chunks", "inner"), _huge_cases())
def test_huge_metadata_matches_zarr(tmp_path, fmt, shape, chunks, inner):
    path = tmp_path / "huge.zarr"
    if inner is not None:
        _write_sharded_zarr_json(path, shape, chunks, inner)
    else:
        (_write_zarray if fmt == 2 else _write_zarr_json)(path, shape, chunks)
    try:
        za = zarr.open_array(str(path), mode="r")
    except ValueError as exc:
        with pytest.raises(ValueError) as info:
            zarrcrop.open(path)
        assert str(info.value) == str(exc)
        return
    ca = zarrcrop.open(path)
    sel = (slice(0, 2), slice(0, 3))
    np.testing.assert_array_equal(ca[sel], za[sel])
    np.testing.assert_array_equal(ca.read_crops([[0, 0], [1, 2]], (2, 2)), np.zeros((2, 2, 2)))
    if not ca.native:
        assert "2 GiB" in ca.fallback_reason or "int64" in ca.fallback_reason, ca.fallback_reason
        with pytest.raises(zarrcrop.FallbackError, match=r"huge\.zarr"):
            zarrcrop.open(path, strict=True)


def test_huge_shard_index_with_a_shard_file_falls_back(tmp_path):
    # 2**61 inner chunks per shard: the index would need 2**65 bytes (it used to wrap around).
    path = tmp_path / "huge.zarr"
    _write_sharded_zarr_json(path, [4, 8], [2**62, 8], [2, 4])
    (path / "c" / "0").mkdir(parents=True)
    (path / "c" / "0" / "0").write_bytes(bytes(64))
    ca = zarrcrop.open(path)
    assert not ca.native and "index" in ca.fallback_reason


def test_native_reader_rejects_huge_shard_index(tmp_path):
    # The core's own check (the Python layer falls back before reaching it).
    with pytest.raises(ValueError, match="shard index"):
        zarrcrop._core.CropReader(
            name="x", root=str(tmp_path), shape=[4, 8], chunks=[2, 4], itemsize=4, codecs=[],
            key_prefix="c", key_separator="/", fill_value=bytes(4), shard_shape=[2**62, 8],
        )  # fmt: skip


@pytest.mark.parametrize(
    "shape", [[2**63 - 1, 8], [2**64, 8], [2**63 - 1, 2**63 - 1], [2**62, 4]], ids=str
)
def test_huge_shape_size_is_exact(tmp_path, shape):
    # zarr-python 3.1 computes size in int64: -8 for (2**63 - 1, 8), an error past 2**64.
    path = tmp_path / "huge.zarr"
    _write_zarray(path, shape, [2, 2])
    ca = zarrcrop.open(path)
    assert ca.size == shape[0] * shape[1]
    assert ca.nbytes == 4 * shape[0] * shape[1]
    if shape[0] < 2**63:
        assert len(ca) == shape[0]
    else:  # Python's own limit for len()
        with pytest.raises(OverflowError):
            len(ca)
