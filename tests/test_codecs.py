"""Codec chains decoded natively besides Blosc (zstd, gzip, crc32c), byte order, Fortran order,
layouts that once fell back; chunks of several gzip members or zstd frames; zstd chunks decoded
only as far as a read needs; damaged chunks of these codecs.

Blosc read block by block: tests/test_codecs_partial_decode.py; chunks near 2 GiB:
tests/test_codecs_large_chunks.py; sharding: tests/test_sharding.py.
"""

from __future__ import annotations

from dataclasses import replace

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import ArraySpec, Blosc, assert_same, create_array, make_data

# Every array here is meant to be read natively: strict mode (tests/conftest.py).
pytestmark = pytest.mark.native


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


_BASE2 = ArraySpec(2, (9, 10), (4, 3), "int32", Blosc("lz4", 5, "shuffle"), 0)
_BASE3 = ArraySpec(3, (9, 10), (4, 3), "int32", None, 0, {"name": "default", "separator": "/"})

# Layouts that once fell back and are now read natively.
NATIVE_EXTRA_CASES = {
    "v2-order-F": replace(_BASE2, layout="v2-order-F"),
    "v2-big-endian": replace(_BASE2, dtype="float32", layout="v2-big-endian"),
    "v2-numcodecs-zstd": replace(_BASE2, layout="v2-numcodecs-zstd"),
    "v3-default-codecs": replace(_BASE3, layout="v3-default-codecs"),
    "v3-big-endian": replace(_BASE3, dtype="complex128", layout="v3-big-endian"),
    "v3-zstd-crc32c": replace(_BASE3, layout="v3-zstd-crc32c"),
    "v3-blosc-crc32c": replace(_BASE3, layout="v3-blosc-crc32c"),
    "v3-sharding": replace(_BASE3, layout="v3-sharding"),
    "v2-numcodecs-gzip": replace(_BASE2, layout="v2-numcodecs-gzip"),
    "v3-gzip": replace(_BASE3, layout="v3-gzip"),
}


@pytest.mark.parametrize("spec", NATIVE_EXTRA_CASES.values(), ids=NATIVE_EXTRA_CASES.keys())
def test_native_extra_layouts_equal_zarr(tmp_path, spec):
    path = tmp_path / "extra.zarr"
    za = create_array(path, spec, make_data(spec.shape, spec.dtype, seed=5), missing=[(1, 1)])
    ca = zarrcrop.open(path, strict=True)
    assert ca.native and ca.fallback_reason is None
    assert ca.dtype == za.dtype
    selections = [(), ..., (3,), (-1, slice(2, 9, 2)), (slice(-7, None), -4), (slice(1, 8),)]
    for sel in selections:
        assert_same(ca[sel], za[sel])
    assert_same(ca[::-2, 7:1:-3], np.asarray(za[...])[::-2, 7:1:-3])
    starts = np.array([[0, 0], [5, 7], [2, 3]])
    batch = ca.read_crops(starts, (4, 3))
    for i, (y, x) in enumerate(starts):
        assert_same(batch[i], za[y : y + 4, x : x + 3])
    cached = zarrcrop.open(path, cache_bytes=1 << 20)
    assert_same(cached[1:8, 2:9], za[1:8, 2:9])
    assert_same(cached[1:8, 2:9], za[1:8, 2:9])


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


# ---------------------------------------------------------------- several gzip members, zstd frames


def _split_gzip(raw: bytes) -> bytes:
    """Two gzip members, as bgzip and concatenated .gz files write them."""
    import gzip

    return gzip.compress(raw[:50]) + gzip.compress(raw[50:])


def _split_zstd(raw: bytes) -> bytes:
    """Two zstd frames, one after the other."""
    return numcodecs.Zstd(level=1).encode(raw[:70]) + numcodecs.Zstd(level=1).encode(raw[70:])


def _skippable_then_zstd(raw: bytes) -> bytes:
    """A skippable frame (magic 0x184D2A5?, size, payload) before the data frame."""
    import struct

    payload = b"zarrcrop skippable frame"
    return struct.pack("<II", 0x184D2A53, len(payload)) + payload + numcodecs.Zstd().encode(raw)


def _rewrite_chunks(root, codec, reencode) -> None:
    """Every chunk file under `root` decoded with `codec` and written back by `reencode`."""
    import os

    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.startswith(".") or name == "zarr.json":
                continue
            file = os.path.join(dirpath, name)
            with open(file, "rb") as f:
                raw = bytes(codec.decode(f.read()))
            with open(file, "wb") as f:
                f.write(reencode(raw))


SPLIT_CASES = {
    "v2-gzip-members": (2, numcodecs.GZip(level=5), _split_gzip),
    "v3-gzip-members": (3, numcodecs.GZip(level=5), _split_gzip),
    "v2-zstd-frames": (2, numcodecs.Zstd(level=3), _split_zstd),
    "v3-zstd-frames": (3, numcodecs.Zstd(level=3), _split_zstd),
    "v2-zstd-skippable": (2, numcodecs.Zstd(level=3), _skippable_then_zstd),
    "v3-zstd-skippable": (3, numcodecs.Zstd(level=3), _skippable_then_zstd),
}


@pytest.mark.parametrize("case", SPLIT_CASES.values(), ids=SPLIT_CASES.keys())
def test_several_gzip_members_and_zstd_frames_read_natively(tmp_path, case):
    # zarr-python reads these (Python's gzip module and zstd decode member after member, frame
    # after frame); zarrcrop refused them ("frame announces ..." / "trailing bytes").
    zarr_format, codec, reencode = case
    path = tmp_path / "a.zarr"
    data = (np.arange(12 * 10).reshape(12, 10) * 3).astype("int32")
    if zarr_format == 2:
        kwargs = {"compressors": codec, "zarr_format": 2}
    else:
        v3 = zarr.codecs.GzipCodec(level=5) if codec.codec_id == "gzip" else zarr.codecs.ZstdCodec()
        kwargs = {"compressors": [v3]}
    za = zarr.create_array(
        store=str(path), shape=data.shape, chunks=(5, 4), dtype="int32", fill_value=0, **kwargs
    )
    za[...] = data
    _rewrite_chunks(path, codec, reencode)
    expected = zarr.open_array(str(path), mode="r")[...]
    np.testing.assert_array_equal(expected, data)
    ca = zarrcrop.open(path, strict=True)
    assert ca.native
    np.testing.assert_array_equal(ca[...], data)
    np.testing.assert_array_equal(ca[3:11, 1:9:3], data[3:11, 1:9:3])
    crops = ca.read_crops([[0, 0], [6, 5]], (6, 5))
    np.testing.assert_array_equal(crops, [data[:6, :5], data[6:, 5:]])


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_split_chunks_in_the_middle_of_a_chain(tmp_path, kind):
    # The first decoded of two codecs: its output size is not the chunk's, so it comes from
    # the members / frames themselves.
    path = tmp_path / "a.zarr"
    first = zarr.codecs.GzipCodec(level=5) if kind == "gzip" else zarr.codecs.ZstdCodec()
    second = zarr.codecs.ZstdCodec() if kind == "gzip" else zarr.codecs.GzipCodec(level=5)
    _, data = _v3(path, [second, first])  # encoded: second, then first
    codec = numcodecs.GZip() if kind == "gzip" else numcodecs.Zstd()
    _rewrite_chunks(path, codec, _split_gzip if kind == "gzip" else _split_zstd)
    np.testing.assert_array_equal(zarr.open_array(str(path), mode="r")[...], data)
    ca = zarrcrop.open(path, strict=True)
    np.testing.assert_array_equal(ca[...], data)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_split_chunks_still_check_the_decoded_size(tmp_path, kind):
    path = tmp_path / "a.zarr"
    codec = numcodecs.GZip() if kind == "gzip" else numcodecs.Zstd()
    za = zarr.create_array(
        store=str(path), shape=(12, 10), chunks=(5, 4), dtype="int32", fill_value=0,
        compressors=codec, zarr_format=2,
    )  # fmt: skip
    za[...] = np.arange(120, dtype=np.int32).reshape(12, 10)
    # One member / frame too many: the chunk decodes to more bytes than its shape holds.
    extra = _split_gzip if kind == "gzip" else _split_zstd
    _rewrite_chunks(path, codec, lambda raw: extra(raw + raw[:8]))
    ca = zarrcrop.open(path)
    # Every chunk is bad; whichever worker fails first names its own chunk.
    with pytest.raises(zarrcrop.ChunkError, match=r"chunk '\d+\.\d+'"):
        ca[...]


def test_zero_padding_after_gzip_members_is_ignored(tmp_path):
    # As Python's GzipFile (numcodecs' decoder) reads it; other trailing bytes are an error.
    path = tmp_path / "a.zarr"
    codec = numcodecs.GZip()
    data = np.arange(120, dtype=np.int32).reshape(12, 10)
    za = zarr.create_array(
        store=str(path), shape=(12, 10), chunks=(5, 4), dtype="int32", fill_value=0,
        compressors=codec, zarr_format=2,
    )  # fmt: skip
    za[...] = data
    _rewrite_chunks(path, codec, lambda raw: _split_gzip(raw) + bytes(16))
    np.testing.assert_array_equal(zarr.open_array(str(path), mode="r")[...], data)
    np.testing.assert_array_equal(zarrcrop.open(path)[...], data)
    _rewrite_chunks(path, codec, lambda raw: _split_gzip(raw) + b"junk")
    with pytest.raises(zarrcrop.ChunkError, match="trailing bytes"):
        zarrcrop.open(path)[...]
