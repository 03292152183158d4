"""zarr v3 sharding (sharding_indexed), read natively and compared with zarr-python."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zarr
import zarrcrop
from hypothesis import given
from hypothesis import strategies as st
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

INNER_CODECS = {
    "blosc": lambda: [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")],
    "blosc-crc32c": lambda: [BloscCodec(cname="lz4", clevel=5), Crc32cCodec()],
    "zstd": lambda: [ZstdCodec(level=1)],
    "raw": lambda: [],
}


def make_sharded(
    path,
    shape,
    inner,
    shard,
    dtype,
    *,
    location="end",
    codecs="blosc",
    index_crc=True,
    fill_value=0,
    seed=0,
    write=None,
):
    serializer = ShardingCodec(
        chunk_shape=inner,
        codecs=[BytesCodec(), *INNER_CODECS[codecs]()],
        index_codecs=[BytesCodec(), Crc32cCodec()] if index_crc else [BytesCodec()],
        index_location=location,
    )
    za = zarr.create_array(
        store=str(path),
        shape=shape,
        chunks=shard,
        dtype=dtype,
        serializer=serializer,
        compressors=None,
        fill_value=fill_value,
    )
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * 100).astype(dtype)
    region = write if write is not None else tuple(slice(0, n) for n in shape)
    za[region] = data[region]
    return za


@st.composite
def sharded_layouts(draw):
    ndim = draw(st.integers(1, 3))
    inner = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    per = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    shard = tuple(i * p for i, p in zip(inner, per, strict=True))
    shape = tuple(draw(st.integers(1, 3 * s + 2)) for s in shard)  # partial edge shards
    return shape, inner, shard


@pytest.mark.native
@given(
    layout=sharded_layouts(),
    location=st.sampled_from(["end", "start"]),
    codecs=st.sampled_from(sorted(INNER_CODECS)),
    dtype=st.sampled_from(["uint8", "int16", "float32", "float64"]),
    index_crc=st.booleans(),
    data=st.data(),
)
def test_sharded_equals_zarr(tmp_path_factory, layout, location, codecs, dtype, index_crc, data):
    shape, inner, shard = layout
    path = tmp_path_factory.mktemp("shard") / "a.zarr"
    # Leave part of the array unwritten: missing shard files and empty inner chunks.
    write = tuple(slice(0, max(1, (2 * n) // 3)) for n in shape)
    za = make_sharded(
        path,
        shape,
        inner,
        shard,
        dtype,
        location=location,
        codecs=codecs,
        index_crc=index_crc,
        fill_value=7,
        write=write,
    )
    ca = zarrcrop.open(path, strict=True)
    assert ca.native and ca.chunks == za.chunks
    full = np.asarray(za[...])
    np.testing.assert_array_equal(ca[...], full)
    for _ in range(3):
        sel = tuple(
            slice(
                data.draw(st.integers(0, n)),
                data.draw(st.integers(0, n)),
                data.draw(st.integers(1, 3)),
            )
            for n in shape
        )
        np.testing.assert_array_equal(ca[sel], full[sel])


@pytest.mark.native
def test_sharded_photo_like_layout(tmp_path):
    """The benchmark layout in small: inner chunks (1, 3, 32, 32), one shard per frame."""
    path = tmp_path / "gt.zarr"
    za = make_sharded(path, (3, 3, 70, 90), (1, 3, 32, 32), (1, 3, 96, 96), "uint8")
    ca = zarrcrop.open(path, strict=True)
    starts = np.array([[0, 0, 5, 9], [2, 0, 38, 50], [1, 0, 0, 0]])
    crops = ca.read_crops(starts, (1, 3, 30, 40))
    for i, (t, _, y, x) in enumerate(starts):
        np.testing.assert_array_equal(crops[i], za[t : t + 1, :, y : y + 30, x : x + 40])
    cached = zarrcrop.open(path, cache_bytes=1 << 20)
    np.testing.assert_array_equal(cached[1, :, 10:60], za[1, :, 10:60])


def _index_region(path, n_inner, location, crc=True):
    raw = path.read_bytes()
    size = 16 * n_inner + (4 if crc else 0)
    start = 0 if location == "start" else len(raw) - size
    return raw, start, size


def _rewrite_index(path, entries, location, crc=True):
    """Write a shard whose data part is kept and whose index says `entries`."""
    import google_crc32c

    n = len(entries)
    raw, start, size = _index_region(path, n, location, crc)
    body = b"".join(struct.pack("<QQ", o, b) for o, b in entries)
    if crc:
        body += struct.pack("<I", google_crc32c.value(body))
    new = raw[:start] + body + raw[start + size :]
    path.write_bytes(new)


def _entries(path, n_inner, location):
    raw, start, _ = _index_region(path, n_inner, location)
    return [struct.unpack_from("<QQ", raw, start + 16 * i) for i in range(n_inner)]


@pytest.fixture(params=["end", "start"])
def shard_file(request, tmp_path):
    path = tmp_path / "s.zarr"
    make_sharded(path, (8, 8), (2, 4), (4, 8), "int32", location=request.param, codecs="zstd")
    return path, path / "c" / "0" / "0", request.param, 4  # 4 inner chunks per shard


def _read_first_shard(path):
    return zarrcrop.open(path)[0:4, 0:8]


@pytest.mark.native
def test_bad_index_checksum_names_the_shard(shard_file):
    path, shard, location, n = shard_file
    raw, start, _ = _index_region(shard, n, location)
    damaged = bytearray(raw)
    damaged[start + 3] ^= 0x01
    shard.write_bytes(bytes(damaged))
    with pytest.raises(zarrcrop.ChunkError, match=r"c/0/0 \(inner chunk.*checksum"):
        _read_first_shard(path)
    # Other shards still read.
    np.testing.assert_array_equal(zarrcrop.open(path)[4:8], zarr.open_array(str(path))[4:8])


@pytest.mark.native
def test_offset_past_the_end(shard_file):
    path, shard, location, n = shard_file
    entries = _entries(shard, n, location)
    entries[1] = (shard.stat().st_size + 100, entries[1][1])
    _rewrite_index(shard, entries, location)
    with pytest.raises(zarrcrop.ChunkError, match=r"c/0/0.*outside the shard"):
        _read_first_shard(path)


@pytest.mark.native
def test_overlapping_ranges(shard_file):
    path, shard, location, n = shard_file
    entries = _entries(shard, n, location)
    entries[2] = (entries[1][0] + 1, entries[2][1])
    _rewrite_index(shard, entries, location)
    with pytest.raises(zarrcrop.ChunkError, match=r"c/0/0.*overlap"):
        _read_first_shard(path)


@pytest.mark.native
def test_truncated_shard(shard_file):
    path, shard, _, _ = shard_file
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.raises(zarrcrop.ChunkError, match=r"c/0/0"):
        _read_first_shard(path)


@pytest.mark.native
def test_rewritten_shard_is_not_read_through_a_stale_index(tmp_path):
    path = tmp_path / "r.zarr"
    za = make_sharded(path, (8, 8), (2, 4), (4, 8), "int32", codecs="zstd")
    ca = zarrcrop.open(path)
    np.testing.assert_array_equal(ca[...], za[...])
    za[0:4, 0:8] = np.arange(32, dtype="int32").reshape(4, 8) * 3  # rewrites shard c/0/0
    np.testing.assert_array_equal(ca[...], za[...])


def test_nested_sharding_falls_back(tmp_path):
    inner = ShardingCodec(chunk_shape=(2, 2), codecs=[BytesCodec()])
    outer = ShardingCodec(chunk_shape=(4, 4), codecs=[inner])
    za = zarr.create_array(
        store=str(tmp_path / "n.zarr"),
        shape=(8, 8),
        chunks=(8, 8),
        dtype="int16",
        serializer=outer,
        compressors=None,
    )
    za[...] = np.arange(64, dtype="int16").reshape(8, 8)
    ca = zarrcrop.open(tmp_path / "n.zarr")
    assert not ca.native and "nested" in ca.fallback_reason
    np.testing.assert_array_equal(ca[...], za[...])
