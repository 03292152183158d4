"""Codec chains decoded natively besides Blosc: zstd, crc32c, byte order, Fortran order."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop


def _v3(path, compressors, dtype="float32", serializer=None):
    data = (np.arange(12 * 10).reshape(12, 10) * 1.25).astype(dtype)
    za = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=(5, 4),
        dtype=dtype,
        serializer=serializer or zarr.codecs.BytesCodec(),
        compressors=compressors,
        fill_value=0,
    )
    za[...] = data
    return za, data


@pytest.mark.parametrize(
    "compressors",
    [
        [zarr.codecs.ZstdCodec(level=1)],
        [zarr.codecs.ZstdCodec(level=5, checksum=True)],
        [zarr.codecs.Crc32cCodec()],
        [zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec()],
        [zarr.codecs.BloscCodec(cname="zstd", clevel=5), zarr.codecs.Crc32cCodec()],
        [zarr.codecs.BloscCodec(cname="lz4", shuffle="bitshuffle"), zarr.codecs.ZstdCodec()],
        [zarr.codecs.GzipCodec(level=6)],
        [zarr.codecs.GzipCodec(level=1), zarr.codecs.Crc32cCodec()],
        [zarr.codecs.ZstdCodec(), zarr.codecs.GzipCodec()],
    ],
    ids=[
        "zstd",
        "zstd-checksum",
        "crc32c",
        "zstd-crc32c",
        "blosc-crc32c",
        "blosc-zstd",
        "gzip",
        "gzip-crc32c",
        "zstd-gzip",
    ],
)
def test_chains_are_native_and_equal(tmp_path, compressors):
    za, data = _v3(tmp_path / "a.zarr", compressors)
    ca = zarrcrop.open(tmp_path / "a.zarr", strict=True)
    assert ca.native
    np.testing.assert_array_equal(ca[...], data)
    np.testing.assert_array_equal(ca[3:11, 1:9:2], np.asarray(za[3:11, 1:9:2]))


@pytest.mark.parametrize("dtype", ["int16", "float32", "float64", "complex64", "complex128"])
def test_big_endian_bytes_codec(tmp_path, dtype):
    za, _ = _v3(
        tmp_path / "be.zarr",
        [zarr.codecs.ZstdCodec()],
        dtype=dtype,
        serializer=zarr.codecs.BytesCodec(endian="big"),
    )
    ca = zarrcrop.open(tmp_path / "be.zarr", strict=True)
    got = ca[2:9, 1:7]
    assert got.dtype == np.dtype(za.dtype)
    np.testing.assert_array_equal(got, np.asarray(za[2:9, 1:7]))


def test_v2_fortran_order_and_numcodecs_zstd(tmp_path):
    data = np.arange(7 * 9 * 4, dtype="int32").reshape(7, 9, 4)
    za = zarr.create_array(
        store=str(tmp_path / "f.zarr"),
        shape=data.shape,
        chunks=(3, 4, 3),
        dtype="int32",
        zarr_format=2,
        order="F",
        compressors=numcodecs.Zstd(level=2),
    )
    za[...] = data
    ca = zarrcrop.open(tmp_path / "f.zarr", strict=True)
    for sel in [(...,), (slice(1, 6), slice(None, None, -2), 2), (6, 8), (slice(2, 7), 3)]:
        np.testing.assert_array_equal(ca[sel], data[sel])


def _first_chunk(path):
    return path / "c" / "0" / "0"


def test_crc32c_mismatch_names_the_chunk(tmp_path):
    path = tmp_path / "crc.zarr"
    _v3(path, [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()])
    chunk = _first_chunk(path)
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    chunk.write_bytes(bytes(raw))
    ca = zarrcrop.open(path)
    with pytest.raises(zarrcrop.ChunkError, match=r"c/0/0.*crc32c checksum mismatch"):
        ca[0:5, 0:4]
    np.testing.assert_array_equal(ca[5:10, 4:8], zarr.open_array(str(path))[5:10, 4:8])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "append"])
def test_corrupt_zstd_chunk_raises(tmp_path, damage):
    path = tmp_path / "z.zarr"
    _v3(path, [zarr.codecs.ZstdCodec()])
    chunk = _first_chunk(path)
    raw = chunk.read_bytes()
    chunk.write_bytes(
        {
            "truncate": raw[: len(raw) // 2],
            "garbage": bytes(range(256)) * 2,
            "empty": b"",
            "append": raw + raw,
        }[damage]
    )
    with pytest.raises(zarrcrop.ChunkError, match="c/0/0"):
        zarrcrop.open(path)[0:2, 0:2]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "append"])
def test_corrupt_gzip_chunk_raises(tmp_path, damage):
    path = tmp_path / "g.zarr"
    _v3(path, [zarr.codecs.GzipCodec()])
    chunk = _first_chunk(path)
    raw = chunk.read_bytes()
    chunk.write_bytes(
        {
            "truncate": raw[: len(raw) // 2],
            "garbage": b"\x1f\x8b" + bytes(100),
            "append": raw + b"x",
        }[damage]
    )
    with pytest.raises(zarrcrop.ChunkError, match=r"c/0/0.*gzip"):
        zarrcrop.open(path)[0:2, 0:2]


@pytest.mark.parametrize("codecs", ["zstd", "zstd+crc32c"])
def test_zstd_chunks_decode_only_the_needed_prefix(tmp_path, codecs):
    """Reads that need only a chunk's first rows stop decoding the zstd frame there; the values
    equal zarr-python's, and frames with a damaged structure (truncated, trailing bytes) still
    raise even when only their first rows are read."""
    chain = [zarr.codecs.ZstdCodec()] + ([zarr.codecs.Crc32cCodec()] if "crc" in codecs else [])
    path = tmp_path / "p.zarr"
    data = (np.arange(256 * 300, dtype=np.uint32) * 2654435761 % 1000).reshape(256, 300)
    za = zarr.create_array(
        store=str(path), shape=data.shape, chunks=(128, 150), dtype=data.dtype, zarr_format=3,
        compressors=chain,
    )  # fmt: skip
    za[...] = data
    ca = zarrcrop.open(path)
    assert ca.native
    for sel in [
        (slice(0, 3), slice(None)),
        (slice(5, 9), slice(20, 40)),
        (0, 149),
        (slice(128, 130),),
    ]:
        np.testing.assert_array_equal(ca[sel], data[sel])
    np.testing.assert_array_equal(ca[...], data)
    chunk = path / "c" / "0" / "0"
    raw = chunk.read_bytes()
    for damaged in (raw[:-3], raw + b"\0" * 7):
        chunk.write_bytes(damaged)
        with pytest.raises(zarrcrop.ChunkError, match="c/0/0"):
            zarrcrop.open(path)[0:2, 0:2]


def test_zstd_prefix_decoding_leaves_the_rest_of_the_frame_undecoded(tmp_path):
    """One chunk of 1.2 MB (about ten zstd blocks) with a byte of its last block damaged: its
    first rows read correctly (the damaged block is never decoded), a full read raises, as
    zarr-python does. This shows the prefix path is taken; it is the same rule as for Blosc
    blocks a read does not need."""
    path = tmp_path / "q.zarr"
    data = (np.arange(1024 * 300, dtype=np.uint32) * 2654435761 % 1000).reshape(1024, 300)
    za = zarr.create_array(
        store=str(path), shape=data.shape, chunks=data.shape, dtype=data.dtype, zarr_format=3,
        compressors=[zarr.codecs.ZstdCodec()],
    )  # fmt: skip
    za[...] = data
    chunk = path / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[-20] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    ca = zarrcrop.open(path)
    np.testing.assert_array_equal(ca[0:2], data[0:2])
    with pytest.raises(zarrcrop.ChunkError, match="c/0/0"):
        ca[...]
    with pytest.raises(RuntimeError):
        zarr.open_array(str(path), mode="r")[...]
