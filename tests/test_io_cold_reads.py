"""Reads of chunk files that are not in the page cache (datasets larger than RAM).

Files are evicted with posix_fadvise(DONTNEED) (zarrcrop's kept mappings cleared first: mapped
pages are not evicted), wholly or in random page ranges, and every read must equal
zarr-python's. The I/O stage's counters (``_core._testing.read_ahead_counts``) show that cold
chunks are read ahead and warm ones are not. Skipped where eviction has no effect (tmpfs).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
import time
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import ArraySpec, Blosc, create_array, make_data, wait_child
from hypothesis import given, settings
from hypothesis import strategies as st
from zarrcrop import _core

PAGE = os.sysconf("SC_PAGESIZE")
pytestmark = pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT") or not hasattr(os, "posix_fadvise"),
    reason="needs preadv2(RWF_NOWAIT) and posix_fadvise (Linux)",
)


def chunk_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith("."))


def evict(root: Path, rng: np.random.Generator | None = None) -> None:
    """Evicts every file under root from the page cache; with rng, random page ranges of
    random files only (a dataset an earlier read left partly cached)."""
    zarrcrop.clear_maps()
    for path in chunk_files(root):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages (a file just written) are not evicted
            if rng is None:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                continue
            pages = -(-os.fstat(fd).st_size // PAGE)
            for _ in range(int(rng.integers(0, 4))):
                first = int(rng.integers(0, max(pages, 1)))
                count = int(rng.integers(1, max(pages // 2, 1) + 1))
                os.posix_fadvise(fd, first * PAGE, count * PAGE, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)


def resident(path: Path) -> list[bool]:
    """Per page of the file, whether it is in the page cache: mincore on a mapping (a probe
    with preadv2(RWF_NOWAIT) would start the kernel's read-ahead of a page it finds missing)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return []
        pages = -(-size // PAGE)
        # A private mapping (never written) shows the page cache's pages; its buffer is
        # writable, so ctypes can take its address.
        with mmap.mmap(fd, size, access=mmap.ACCESS_COPY) as m:
            view = (ctypes.c_ubyte * size).from_buffer(m)
            try:
                vec = (ctypes.c_ubyte * pages)()
                addr = ctypes.c_void_p(ctypes.addressof(view))
                if _libc.mincore(addr, ctypes.c_size_t(size), vec) != 0:
                    raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
                return [bool(v & 1) for v in vec]
            finally:
                del view
    finally:
        os.close(fd)


def cached(path: Path, offset: int = 0) -> bool:
    """Whether the page holding byte `offset` is in the page cache (past the end: True)."""
    pages = resident(path)
    return offset // PAGE >= len(pages) or pages[offset // PAGE]


def require_eviction(root: Path) -> None:
    evict(root)
    if all(cached(p) for p in chunk_files(root)):
        pytest.skip("evicting files from the page cache has no effect on this file system")


# Layouts with chunks large enough (>= 64 KiB compressed) to be read block by block, small
# ones read whole, and the routes that are not Blosc.
LAYOUTS = [
    ArraySpec(2, (3, 520, 700), (1, 256, 256), "uint16", Blosc("zstd", 3, "bitshuffle")),
    ArraySpec(2, (3, 520, 700), (1, 256, 256), "uint16", Blosc("lz4", 5, "shuffle")),
    ArraySpec(2, (3, 520, 700), (1, 256, 256), "uint16", Blosc("blosclz", 5, "noshuffle")),
    ArraySpec(2, (3, 520, 700), (1, 96, 96), "uint16", Blosc("zstd", 3, "shuffle")),
    ArraySpec(2, (3, 520, 700), (1, 256, 256), "uint16", None),
    ArraySpec(2, (3, 520, 700), (1, 256, 256), "uint16", None, layout="v2-numcodecs-zstd"),
    ArraySpec(
        3,
        (3, 520, 700),
        (1, 128, 128),
        "uint16",
        Blosc("zstd", 3, "bitshuffle"),
        layout="v3-sharding",
    ),
    ArraySpec(3, (3, 520, 700), (1, 256, 256), "float32", Blosc("lz4", 5, "bitshuffle")),
]


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold")
    out = []
    for i, spec in enumerate(LAYOUTS):
        path = root / f"a{i}.zarr"
        data = make_data(spec.shape, spec.dtype, seed=i, mode="runs" if i % 2 else "random")
        create_array(path, spec, data)
        out.append((path, data))
    require_eviction(root)
    return out


@settings(max_examples=40)
@given(
    which=st.integers(0, len(LAYOUTS) - 1),
    seed=st.integers(0, 2**32 - 1),
    partial=st.booleans(),
    batch=st.booleans(),
)
def test_cold_reads_equal_zarr_python(arrays, which, seed, partial, batch):
    path, data = arrays[which]
    rng = np.random.default_rng(seed)
    a = zarrcrop.open(path)
    za = zarr.open_array(str(path), mode="r")
    crop = (1, int(rng.integers(1, 400)), int(rng.integers(1, 500)))
    starts = np.array(
        [[int(rng.integers(0, data.shape[d] - crop[d] + 1)) for d in range(3)] for _ in range(5)]
    )
    evict(path, rng if partial else None)
    if batch:
        got = a.read_crops(starts, crop)
        expected = np.stack(
            [za[tuple(slice(s, s + c) for s, c in zip(row, crop, strict=True))] for row in starts]
        )
    else:
        sel = tuple(slice(s, s + c) for s, c in zip(starts[0], crop, strict=True))
        got, expected = a[sel], za[sel]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def _zstd_array(tmp_path: Path, name: str = "z.zarr") -> tuple[Path, np.ndarray]:
    # Low-entropy values: chunks of about 200 KB, read block by block.
    path = tmp_path / name
    data = np.random.default_rng(7).integers(0, 50, size=(2, 1024, 1024), dtype=np.uint16)
    create_array(path, ArraySpec(2, data.shape, (1, 512, 512), "uint16",
                                 Blosc("zstd", 3, "bitshuffle")), data)  # fmt: skip
    assert min(p.stat().st_size for p in chunk_files(path)) > 100_000
    require_eviction(path)
    return path, data


def test_cold_chunks_are_read_ahead_and_warm_ones_are_not(tmp_path):
    path, data = _zstd_array(tmp_path)
    a = zarrcrop.open(path)
    sel = (0, slice(300, 700), slice(300, 700))  # four chunks, parts of each
    size = sum(p.stat().st_size for p in chunk_files(path))

    evict(path)
    _core._testing.reset_read_ahead_counts()
    np.testing.assert_array_equal(a[sel], data[sel])
    cold = _core._testing.read_ahead_counts()
    # Four cold chunks; on a disk the host caches, a probe may bring a header in at once (the
    # chunk then counts as warm, its blocks are still read: seen for all four in a full run).
    assert cold["cold_chunks"] <= 4
    # Headers and then the needed blocks: at least one request per chunk besides headers.
    assert cold["requests"] >= 4 + cold["cold_chunks"]
    assert 0 < cold["bytes"] <= size

    _core._testing.reset_read_ahead_counts()
    np.testing.assert_array_equal(a[sel], data[sel])
    assert _core._testing.read_ahead_counts() == {"cold_chunks": 0, "requests": 0, "bytes": 0}


def test_warm_header_with_cold_blocks_is_read_ahead(tmp_path):
    # An earlier read left each file's first page cached, the rest not: the blocks are found
    # missing through the mapping (mincore) and read ahead.
    path, data = _zstd_array(tmp_path)
    a = zarrcrop.open(path)
    sel = (1, slice(200, 800), slice(200, 800))
    a[sel]
    zarrcrop.clear_maps()
    for p in chunk_files(path):
        fd = os.open(p, os.O_RDONLY)
        os.fdatasync(fd)
        os.posix_fadvise(fd, PAGE, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    _core._testing.reset_read_ahead_counts()
    np.testing.assert_array_equal(a[sel], data[sel])
    counts = _core._testing.read_ahead_counts()
    assert counts["cold_chunks"] == 0 and counts["requests"] >= 4, counts


def test_a_cold_truncated_chunk_is_an_error_naming_it(tmp_path):
    path, _ = _zstd_array(tmp_path)
    victim = path / "0.1.1"
    os.truncate(victim, victim.stat().st_size // 2)
    evict(path)
    a = zarrcrop.open(path)
    with pytest.raises(zarrcrop.ChunkError, match=r"0\.1\.1"):
        a[0, 500:600, 500:600]
    # The other chunks still read, cold.
    evict(path)
    za = zarr.open_array(str(path), mode="r")
    np.testing.assert_array_equal(a[1, :, :], za[1, :, :])


def test_a_cold_chunk_path_that_is_a_directory_is_an_error_naming_it(tmp_path):
    path, _ = _zstd_array(tmp_path)
    victim = path / "1.0.0"
    victim.unlink()
    victim.mkdir()
    evict(path)
    with pytest.raises(OSError, match=r"1\.0\.0"):
        zarrcrop.open(path)[1, :10, :10]


def test_cold_reads_under_a_low_open_files_limit(tmp_path):
    # The I/O stage opens a window's files before reading any: with few descriptors left the
    # EMFILE retries still complete the read.
    path = tmp_path / "many.zarr"
    data = make_data((64, 64, 1024), "uint8", seed=3, mode="runs")
    z = zarr.open_array(str(path), mode="w", shape=data.shape, chunks=(1, 64, 1024),
                        dtype="uint8", zarr_format=2,
                        compressor=numcodecs.Blosc(cname="zstd", clevel=1, shuffle=2))  # fmt: skip
    z[:] = data
    require_eviction(path)
    a = zarrcrop.open(path)
    a[0, :1, :1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 12, hard))
    try:
        for _ in range(2):
            evict(path)
            np.testing.assert_array_equal(a[:, 10:50, ::3], data[:, 10:50, ::3])
            evict(path)
            starts = np.array([[t, 0, 0] for t in range(0, 64, 2)])
            np.testing.assert_array_equal(a.read_crops(starts, (1, 64, 1024)), data[::2][:, None])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_cold_reads_in_a_forked_child(tmp_path):
    path, data = _zstd_array(tmp_path)
    a = zarrcrop.open(path)
    np.testing.assert_array_equal(a[:], data)  # the parent has read (pool, mappings)
    evict(path)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            ok = np.array_equal(a[:, 50:950, 7:1000], data[:, 50:950, 7:1000])
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    assert wait_child(pid, 120) == 0


# ------------------------------------------------------------------------------ prefetch


def _wait(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_prefetch_reads_headers_then_the_blocks_crops_to_come_need(tmp_path):
    path, data = _zstd_array(tmp_path)
    a = zarrcrop.open(path)
    starts = np.array([[0, 300, 300], [1, 0, 0]])
    needed = [path / k for k in ("0.0.0", "0.0.1", "0.1.0", "0.1.1", "1.0.0")]
    total = sum(p.stat().st_size for p in needed)
    evict(path)
    # First call: the headers (and block offsets) of the chunks the crops touch. (A header
    # the kernel delivers within the cache probe itself is cached already: its blocks then.)
    asked = a.prefetch(starts, (1, 400, 400))
    assert len(needed) * 8192 <= asked < total
    # It does not wait: the headers arrive in the background.
    assert _wait(lambda: all(cached(p, 0) for p in needed))
    assert not any(resident(path / "1.1.1"))  # not touched by the crops: not read
    # Then, with the headers cached, the blocks the crops need (not whole files), until
    # everything they need is cached and a read finds nothing to read from the device.
    assert _wait(lambda: a.prefetch(starts, (1, 400, 400)) == 0)
    assert sum(sum(resident(p)) for p in needed) * PAGE < total
    _core._testing.reset_read_ahead_counts()
    got = a.read_crops(starts, (1, 400, 400))
    assert _core._testing.read_ahead_counts() == {"cold_chunks": 0, "requests": 0, "bytes": 0}
    np.testing.assert_array_equal(got[0, 0], data[0, 300:700, 300:700])
    np.testing.assert_array_equal(got[1, 0], data[1, :400, :400])


def test_prefetch_budget_and_arguments(tmp_path):
    path, _ = _zstd_array(tmp_path)
    a = zarrcrop.open(path)
    starts = np.array([[0, 0, 0], [1, 600, 600]])
    evict(path)
    assert a.prefetch(starts, (1, 100, 100), budget=0) == 0
    one = a.prefetch(starts, (1, 100, 100), budget=1)  # stops after the first chunk
    assert 8192 <= one <= (path / "0.0.0").stat().st_size
    assert zarrcrop.DEFAULT_PREFETCH_BUDGET == 256 << 20
    with pytest.raises(ValueError, match="budget"):
        a.prefetch(starts, (1, 100, 100), budget=-1)
    with pytest.raises(IndexError, match="outside"):
        a.prefetch([[0, 1000, 0]], (1, 100, 100))
    assert _wait(lambda: cached(path / "0.0.0", 0))
    # 0.0.0's header is cached now: its first block is asked for (fill outside the array),
    # unless the kernel's read-ahead of the header brought it in already.
    first_block = resident(path / "0.0.0")[:8]
    asked = a.prefetch([[0, -50, -50]], (1, 100, 100), boundary="fill")
    assert asked > 0 or all(first_block)
    with pytest.raises(ValueError, match="starts"):
        a.prefetch([[0, 0]], (1, 100, 100))


def test_prefetch_of_small_chunks_reads_them_whole(tmp_path):
    path = tmp_path / "small.zarr"
    data = make_data((2, 256, 256), "uint16", seed=2, mode="runs")
    create_array(path, ArraySpec(2, data.shape, (1, 64, 64), "uint16",
                                 Blosc("zstd", 3, "shuffle")), data)  # fmt: skip
    require_eviction(path)
    a = zarrcrop.open(path)
    evict(path)
    files = [path / "0.0.0", path / "0.0.1"]
    # Whole files, but not those the cache probe itself brought in (a disk the host caches:
    # either file, seen in a full run).
    sizes = [p.stat().st_size for p in files]
    assert a.prefetch([[0, 0, 10]], (1, 20, 64)) in (0, sizes[0], sizes[1], sum(sizes))
    assert _wait(lambda: all(cached(p, p.stat().st_size - 1) for p in files))


def test_prefetch_of_a_corrupt_sharded_index_names_the_shard(tmp_path):
    path = tmp_path / "s.zarr"
    data = make_data((2, 256, 256), "uint16", seed=1, mode="runs")
    spec = ArraySpec(3, data.shape, (1, 64, 64), "uint16", Blosc("zstd", 3, "shuffle"),
                     layout="v3-sharding")  # fmt: skip
    create_array(path, spec, data)
    shard = next(p for p in chunk_files(path) if p.name != "zarr.json")
    with open(shard, "r+b") as f:  # the index is at the end: make it nonsense
        f.seek(-40, os.SEEK_END)
        f.write(b"\xff" * 40)
    a = zarrcrop.open(path)
    with pytest.raises(zarrcrop.ChunkError, match=shard.name):
        for t in range(2):
            a.prefetch([[t, 0, 0]], (1, 256, 256))


def test_prefetch_on_an_array_read_through_zarr_python_is_a_no_op():
    store = zarr.storage.MemoryStore()
    z = zarr.create_array(store, shape=(10, 10), chunks=(5, 5), dtype="u1")
    z[:] = 1
    a = zarrcrop.open(store)
    assert not a.native
    assert a.prefetch([[0, 0]], (5, 5)) == 0
