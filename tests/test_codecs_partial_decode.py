"""Partial decoding: crops that touch parts of Blosc blocks, of compressed and memcpyed chunks,
small (read whole) and large (read block by block) chunk files, with and without the cache."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop

# Every array here is meant to be read natively: strict mode (tests/conftest.py).
pytestmark = pytest.mark.native

SHAPE = (2, 3, 300, 260)  # chunk (1, 3, 160, 200) uint8 = 96000 bytes: read block by block


def _content(kind: str, dtype: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    if kind == "random":  # incompressible: Blosc stores these chunks memcpyed
        raw = rng.integers(0, 256, size=np.prod(SHAPE) * np.dtype(dtype).itemsize, dtype=np.uint8)
        return raw.view(dtype).reshape(SHAPE)
    yy, xx = np.mgrid[0 : SHAPE[2], 0 : SHAPE[3]]
    smooth = (np.sin(yy / 17.0) * 40 + np.cos(xx / 11.0) * 40 + 120).astype(np.float64)
    frames = np.stack([smooth + 10 * t + 30 * c for t in range(2) for c in range(3)])
    noisy = frames.reshape(SHAPE) + rng.normal(0, 3, SHAPE)
    return noisy.astype(dtype)


@pytest.fixture(scope="module", params=["photo-like", "random"])
def stored(request, tmp_path_factory):
    kind = request.param
    root = tmp_path_factory.mktemp(f"partial-{kind}")
    arrays = {}
    for cname, shuffle, dtype, blocksize in [
        ("zstd", numcodecs.Blosc.BITSHUFFLE, "uint8", 4096),
        ("lz4", numcodecs.Blosc.SHUFFLE, "uint16", 8192),
        ("blosclz", numcodecs.Blosc.NOSHUFFLE, "uint8", 0),
        ("zstd", numcodecs.Blosc.BITSHUFFLE, "float32", 16384),
        ("zlib", numcodecs.Blosc.BITSHUFFLE, "int16", 2048),
        # zstd streams that zarrcrop decodes block by block itself: unshuffled multi-byte
        # items, and 1-byte items whose blocks are not a multiple of 8 bytes (left unshuffled).
        ("zstd", numcodecs.Blosc.NOSHUFFLE, "uint16", 1000),
        ("zstd", numcodecs.Blosc.BITSHUFFLE, "uint8", 1300),
        # ... with every shuffle filter and item size: byte shuffle of 2-16 byte items, bit
        # shuffle of multi-byte items (500 items per block: not a multiple of 8, so Blosc1
        # stores those blocks unshuffled), and lz4 streams.
        ("zstd", numcodecs.Blosc.SHUFFLE, "float64", 8192),
        ("zstd", numcodecs.Blosc.BITSHUFFLE, "uint16", 1000),
        ("zstd", numcodecs.Blosc.BITSHUFFLE, "float16", 8192),
        ("zstd", numcodecs.Blosc.BITSHUFFLE, "complex128", 16384),
        ("zstd", numcodecs.Blosc.SHUFFLE, "complex128", 4096),
        ("lz4", numcodecs.Blosc.BITSHUFFLE, "uint8", 4096),
        ("lz4", numcodecs.Blosc.BITSHUFFLE, "float32", 0),
        ("lz4", numcodecs.Blosc.NOSHUFFLE, "int16", 0),
        ("lz4", numcodecs.Blosc.SHUFFLE, "int32", 3000),
    ]:
        data = _content(kind, dtype)
        name = f"{cname}-{shuffle}-{dtype}-{blocksize}"
        za = zarr.create_array(
            store=str(root / name),
            shape=SHAPE,
            chunks=(1, 3, 160, 200),
            dtype=dtype,
            zarr_format=2,
            compressors=numcodecs.Blosc(
                cname=cname, clevel=5, shuffle=shuffle, blocksize=blocksize
            ),
        )
        za[...] = data
        arrays[name] = (root / name, data)
    return kind, arrays


def _selections(rng: np.random.Generator, n: int):
    for _ in range(n):
        t = int(rng.integers(0, 2))
        y, x = int(rng.integers(0, 300)), int(rng.integers(0, 260))
        h, w = int(rng.integers(1, 200)), int(rng.integers(1, 220))
        yield (t, slice(None), slice(y, y + h), slice(x, x + w))
        yield (t, int(rng.integers(0, 3)), slice(y, y + h, 3), slice(x, x + w, 2))
        yield (slice(None), slice(None, None, -1), y % 300, slice(x, None, -5))


@pytest.mark.parametrize("cache_bytes", [0, 10_000_000])
def test_partial_reads_equal_zarr(stored, cache_bytes):
    kind, arrays = stored
    rng = np.random.default_rng(17)
    for name, (path, data) in arrays.items():
        arr = zarrcrop.open(path, cache_bytes=cache_bytes)
        za = zarr.open_array(str(path), mode="r")
        assert arr.native, name
        for sel in _selections(rng, 15):
            got = arr[sel]
            np.testing.assert_array_equal(got, data[sel], err_msg=f"{kind} {name} {sel}")
            assert got.dtype == za.dtype
        # One row of each channel: a single Blosc block per channel.
        np.testing.assert_array_equal(arr[1, :, 159, 3:9], np.asarray(za[1, :, 159, 3:9]))
        # Whole chunks, straight into the output.
        np.testing.assert_array_equal(arr[0, :, :160, :200], data[0, :, :160, :200])
        np.testing.assert_array_equal(arr[...], data)


def test_memcpyed_chunks_are_stored_raw(stored):
    """The random content really exercises the memcpyed path (Blosc flag 0x2)."""
    kind, arrays = stored
    path, _ = arrays["zstd-2-uint8-4096"]
    flags = (path / "0.0.0.0").read_bytes()[2]
    assert bool(flags & 0x2) == (kind == "random")


def test_cache_counts_hits(stored):
    _, arrays = stored
    path, data = arrays["zstd-2-uint8-4096"]
    arr = zarrcrop.open(path, cache_bytes=10_000_000)
    sel = (0, slice(None), slice(10, 50), slice(20, 70))
    np.testing.assert_array_equal(arr[sel], data[sel])
    np.testing.assert_array_equal(arr[sel], data[sel])
    info = arr.cache_info()
    assert info["misses"] == 1 and info["hits"] == 1 and info["entries"] == 1
    assert info["size"] == 3 * 160 * 200
    arr.clear_cache()
    assert arr.cache_info()["entries"] == 0
    small = zarrcrop.open(path, cache_bytes=100_000)  # room for one chunk only
    np.testing.assert_array_equal(small[0, :, :, :], data[0])
    assert small.cache_info()["entries"] == 1
    assert small.cache_info()["size"] <= 100_000


@pytest.mark.parametrize("impl", ["portable", "sse2", "gfni", "auto"])
@pytest.mark.parametrize("n", [8, 64, 128, 136, 4104, 262144])
def test_bitunshuffle_kernels(impl, n):
    """Our bit-unshuffle (used for 1-byte items) against a NumPy model of Blosc's layout."""
    items = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    bits = np.unpackbits(items.reshape(-1, 1), axis=1, bitorder="little")  # bit k of item i
    planes = np.packbits(bits.T.reshape(8, -1), axis=1, bitorder="little").reshape(-1)
    out = zarrcrop._core._testing.bitunshuffle_u8(planes.tobytes(), impl)
    if out is None:
        pytest.skip(f"{impl} not available on this CPU/build")
    assert out == items.tobytes()


@pytest.mark.parametrize("impl", ["portable", "sse2", "gfni", "auto"])
@pytest.mark.parametrize("n", [8, 64, 128, 136, 256, 4104, 65536])
def test_bitunshuffle_range_kernels(impl, n):
    """Windowed bit-unshuffle (straight into the output rows) equals slicing the whole block,
    for ranges cut anywhere: inside 8-item groups, inside 128-item steps, at the block end."""
    items = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    bits = np.unpackbits(items.reshape(-1, 1), axis=1, bitorder="little")
    planes = np.packbits(bits.T.reshape(8, -1), axis=1, bitorder="little").reshape(-1).tobytes()
    rng = np.random.default_rng(n + 1)
    edges = {0, 1, 7, 8, 9, 127, 128, 129, 255, n - 129, n - 128, n - 9, n - 8, n - 1, n}
    cases = [(a, b) for a in edges for b in edges if 0 <= a <= b <= n]
    cases += [tuple(sorted(rng.integers(0, n + 1, 2))) for _ in range(200)]
    for a, b in cases:
        out = zarrcrop._core._testing.bitunshuffle_u8_range(planes, int(a), int(b), impl)
        if out is None:
            pytest.skip(f"{impl} not available on this CPU/build")
        assert out == items[a:b].tobytes(), (a, b)


@pytest.mark.parametrize("typesize", [1, 2, 3, 4, 8, 16])
def test_bitunshuffle_items_of_several_bytes(typesize):
    """Windowed Blosc1 bit-unshuffle of multi-byte items (byte j of every item bit-shuffled
    as its own 1-byte block, one after the other) equals slicing the items."""
    n = 1024
    rng = np.random.default_rng(typesize)
    items = rng.integers(0, 256, (n, typesize), dtype=np.uint8)
    planes = b""
    for j in range(typesize):
        bits = np.unpackbits(items[:, j].reshape(-1, 1), axis=1, bitorder="little")
        planes += np.packbits(bits.T.reshape(8, -1), axis=1, bitorder="little").tobytes()
    edges = [0, 1, 7, 8, 9, 127, 128, 129, 500, n - 129, n - 8, n - 1, n]
    cases = [(a, b) for a in edges for b in edges if a <= b]
    cases += [tuple(sorted(int(v) for v in rng.integers(0, n + 1, 2))) for _ in range(100)]
    for a, b in cases:
        got = zarrcrop._core._testing.bitunshuffle_items(planes, typesize, a, b)
        assert got == items[a:b].tobytes(), (a, b)
    with pytest.raises(ValueError):
        zarrcrop._core._testing.bitunshuffle_items(planes[:-typesize], typesize, 0, 1)


def test_bitunshuffle_range_rejects_bad_ranges():
    with pytest.raises(ValueError):
        zarrcrop._core._testing.bitunshuffle_u8_range(bytes(64), 10, 5)
    with pytest.raises(ValueError):
        zarrcrop._core._testing.bitunshuffle_u8_range(bytes(64), 0, 65)


@pytest.mark.parametrize("blocksize", [1001, 4097, 65536])
def test_blocks_that_split_items(tmp_path, blocksize):
    """Blosc chunks written with typesize 1 for 2- and 8-byte items: block boundaries fall inside
    items, so a block-by-block copy to the output must join the halves (and zarr-python, which
    decodes whole chunks, reads them fine)."""
    rng = np.random.default_rng(blocksize)
    for dtype in ("uint16", "float64"):
        data = (rng.normal(0, 100, SHAPE) + 1000).astype(dtype)
        path = tmp_path / f"{dtype}-{blocksize}"
        za = zarr.create_array(
            store=str(path),
            shape=SHAPE,
            chunks=(1, 3, 160, 200),
            dtype=dtype,
            zarr_format=2,
            compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE),
        )
        za[...] = data
        codec = numcodecs.Blosc(
            cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE, blocksize=blocksize
        )
        for chunk in path.glob("*.*.*.*"):
            t, _, i, j = (int(v) for v in chunk.name.split("."))
            block = np.ascontiguousarray(
                data[t, :, i * 160 : (i + 1) * 160, j * 200 : (j + 1) * 200]
            )
            full = np.zeros((3, 160, 200), dtype)  # edge chunks are padded to the chunk shape
            full[:, : block.shape[1], : block.shape[2]] = block
            encoded = codec.encode(full.view(np.uint8))  # typesize 1
            assert encoded[3] == 1
            chunk.write_bytes(encoded)
        arr = zarrcrop.open(path)
        assert arr.native
        za = zarr.open_array(str(path), mode="r")
        for sel in _selections(np.random.default_rng(5), 10):
            np.testing.assert_array_equal(arr[sel], data[sel], err_msg=f"{dtype} {sel}")
        np.testing.assert_array_equal(arr[...], np.asarray(za[...]))
        np.testing.assert_array_equal(arr[1, :, 7:290, 3:251], np.asarray(za[1, :, 7:290, 3:251]))


@pytest.mark.parametrize("order", ["C", "F"])
def test_items_far_apart_decode_only_their_blocks(tmp_path, order):
    """A read whose innermost run is a few items more than a Blosc block apart (one pixel of
    every channel, a column, a large step), or whose rows are, decodes only the blocks holding
    those items: a
    damaged block between them is never touched, while a read that needs it raises (as
    zarr-python does for any read of the chunk)."""
    shape = (3, 256, 256)
    data = np.random.default_rng(7).integers(0, 16, shape, dtype=np.uint8)  # compressible
    path = tmp_path / f"far-{order}.zarr"
    za = zarr.create_array(
        store=str(path), shape=shape, chunks=shape, dtype="uint8", zarr_format=2, order=order,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE,
                                    blocksize=4096),
    )  # fmt: skip
    za[...] = data
    chunk = path / "0.0.0"
    raw = bytearray(chunk.read_bytes())
    nblocks = -(-data.nbytes // 4096)
    assert raw[0] == 2 and raw[3] == 1 and not raw[2] & 0x02  # Blosc1 format, compressed
    bstarts = np.frombuffer(bytes(raw[16 : 16 + 4 * nblocks]), dtype="<i4")
    middle = nblocks // 2  # channel 1 in C order, columns ~128 in F order
    raw[bstarts[middle] + 4 : bstarts[middle] + 8] = b"\0\0\0\0"  # breaks the zstd frame magic
    chunk.write_bytes(bytes(raw))
    ca = zarrcrop.open(path)
    assert ca.native, ca.fallback_reason
    # The last of each: rows (columns in F order) 100 apart, each a run of many items, so the
    # gaps between blocks to decode are at an outer dimension of the copy.
    if order == "C":
        sels = [
            (slice(None), 5, 7),
            (slice(None, None, 2), 200, slice(3, 5)),
            (0, slice(None), 9),
            (slice(None), slice(None, None, 100), slice(0, 50)),
        ]
    else:
        sels = [
            (slice(None), 5, 7),
            (1, 200, slice(None, None, 100)),
            (0, 9, slice(None, 40)),
            (1, slice(None), slice(None, None, 100)),
        ]
    for sel in sels:
        np.testing.assert_array_equal(ca[sel], data[sel])
    with pytest.raises(zarrcrop.ChunkError, match=r"0\.0\.0"):
        ca[...]
    with pytest.raises((ValueError, RuntimeError)):
        zarr.open_array(str(path), mode="r")[...]


@pytest.mark.parametrize(
    ("dtype", "blosc_typesize"),
    [("uint8", 1), ("float16", 2), ("float32", 4), ("uint16", 1), ("uint8", 4), ("uint16", 8)],
)
@pytest.mark.parametrize("blocksize", [0, 4096, 2504, 1300])
@pytest.mark.parametrize("spread", [2, 40])  # 1 bit of noise: small chunk files
def test_unshuffle_into_output_rows(tmp_path, dtype, blosc_typesize, blocksize, spread):
    """Bit-shuffled blocks are unshuffled straight into the output rows when a block has one
    or two destinations (rows of 128 bytes or more), and through a block buffer for more or
    for shorter rows: crops at every offset modulo 8
    and 128, crops sharing blocks (read_crops with 1, 2 and 5 crops on the same chunk),
    blocks whose item count is not a multiple of 8 (Blosc1 leaves them unshuffled), chunk
    files read whole (< 64 KiB) and block by block, Blosc items of other sizes than the
    array's (rows cut inside Blosc items), all equal to zarr-python."""
    shape, chunks = (2, 3, 280, 440), (1, 3, 140, 220)  # 92,400 items per chunk
    rng = np.random.default_rng(blocksize + spread)
    base = np.add.outer(np.arange(shape[2]) // 4, np.arange(shape[3]) // 4) % 200
    data = ((base + rng.integers(0, spread, shape)) % 256).astype(dtype)
    if data.dtype.kind == "f":
        data = data * np.asarray(0.37, dtype)
    path = tmp_path / "u.zarr"
    codec = numcodecs.Blosc(
        cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE, blocksize=blocksize
    )
    za = zarr.create_array(
        store=str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=2,
        compressors=codec,
    )  # fmt: skip
    za[...] = data
    if blosc_typesize != data.itemsize:  # re-encode with Blosc items of another size
        for chunk in path.glob("*.*.*.*"):
            t, _, i, j = (int(v) for v in chunk.name.split("."))
            part = np.ascontiguousarray(
                data[t, :, i * 140 : (i + 1) * 140, j * 220 : (j + 1) * 220]
            )
            encoded = codec.encode(part.view(f"u{blosc_typesize}"))
            assert encoded[3] == blosc_typesize
            chunk.write_bytes(encoded)
    files = [p.read_bytes() for p in path.glob("*.*.*.*")]
    big = [len(f) >= 64 * 1024 for f in files]  # read block by block, else read whole
    if spread == 40:
        assert all(big), [len(f) for f in files]
    elif dtype == "uint8":
        assert not any(big), [len(f) for f in files]
    assert not any(f[2] & 0x02 for f in files)  # compressed, not stored raw
    ref = zarr.open_array(str(path), mode="r")
    ca = zarrcrop.open(path)
    assert ca.native, ca.fallback_reason
    for _ in range(40):
        h, w = int(rng.integers(1, 141)), int(rng.integers(1, 221))  # up to whole chunks
        y = int(rng.integers(0, shape[2] - h + 1))
        x = int(rng.integers(0, shape[3] - w + 1))
        t = int(rng.integers(0, 2))
        sel = (t, slice(None), slice(y, y + h), slice(x, x + w))
        np.testing.assert_array_equal(ca[sel], ref[sel])
        for n in (1, 2, 5):  # crops sharing this chunk's blocks: 1, 2 and 5 destinations
            starts = np.array([[t, 0, y, min(x + k, shape[3] - w)] for k in range(n)])
            got = ca.read_crops(starts, (1, 3, h, w))
            for k, (tt, _, yy, xx) in enumerate(starts):
                np.testing.assert_array_equal(got[k, 0], ref[tt, :, yy : yy + h, xx : xx + w])


@pytest.mark.parametrize("shuffle", ["bitshuffle", "shuffle", "noshuffle"])
@pytest.mark.parametrize(
    ("dtype", "typesize"), [("uint8", 4), ("uint8", 3), ("float32", 2), ("int16", 8)]
)
def test_blosc_typesize_other_than_the_item_size(tmp_path, shuffle, dtype, typesize):
    """zarr v3's blosc codec records its typesize apart from the data type (the spec makes
    Blosc a bytes-to-bytes codec), so zarr-python writes, say, uint8 arrays shuffled as 4-byte
    items: read natively, equal to zarr-python (they were rejected as malformed before)."""
    shape = SHAPE
    rng = np.random.default_rng(typesize)
    base = np.add.outer(np.arange(shape[2]) // 3, np.arange(shape[3]) // 5) % 100
    data = (base + rng.integers(0, 30, shape)).astype(dtype)
    path = tmp_path / "ts.zarr"
    codec = zarr.codecs.BloscCodec(typesize=typesize, cname="zstd", clevel=3, shuffle=shuffle)
    za = zarr.create_array(
        store=str(path), shape=shape, chunks=(1, 3, 140, 250), dtype=dtype, zarr_format=3,
        compressors=[codec],
    )  # fmt: skip
    za[...] = data
    raw = (path / "c" / "0" / "0" / "0" / "0").read_bytes()
    assert raw[3] == typesize
    ca = zarrcrop.open(path)
    assert ca.native, ca.fallback_reason
    ref = np.asarray(za[...])  # zarr-python (no negative steps): the reference
    np.testing.assert_array_equal(ref, data)
    for sel in [*_selections(rng, 12), (Ellipsis,)]:
        np.testing.assert_array_equal(ca[sel], ref[sel], err_msg=str(sel))
    starts = np.array([[0, 0, 5, 7], [1, 0, 100, 200], [1, 0, 0, 3]])
    got = ca.read_crops(starts, (1, 3, 50, 60))
    for k, (t, _, y, x) in enumerate(starts):
        np.testing.assert_array_equal(got[k, 0], ref[t, :, y : y + 50, x : x + 60])
