"""The core's remote route, driven by a fetch function over a local directory: every codec and
layout read as objects of a store (first reads that tell the size, whole or piecewise chunks,
shard indexes fetched from the end or the start), equal to zarr-python; and what the core does
with a fetcher that fails, answers short, or sees an object change.

The HTTP client and real servers are tested in test_remote_*.py; this file isolates the core
(``_core.CropReader(fetch=...)``) from the network.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import ArraySpec, Blosc, create_array, make_data
from hypothesis import given, settings
from hypothesis import strategies as st
from zarrcrop import _core


class DirFetcher:
    """fetch(key, offset, length, from_end, out) over files of a directory, counting calls;
    ``version`` is reported for every object (change it to simulate a rewrite)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = "v1"
        self.calls = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.fail: dict[str, BaseException] = {}
        self.short: set[str] = set()

    def __call__(self, key, offset, length, from_end, out):
        if key in self.fail:
            raise self.fail[key]
        path = self.root / key
        if not path.is_file():
            return (False, 0, 0, 0, None)
        data = path.read_bytes()
        size = len(data)
        start = max(0, size - length) if from_end else min(offset, size)
        piece = data[start : start + length]
        if key in self.short:
            piece = piece[: len(piece) // 2]
        out[: len(piece)] = piece
        with self.lock:
            self.calls += 1
            self.bytes += len(piece)
        return (True, size, start, len(piece), self.version)


def remote_reader(path: Path, fetch: DirFetcher, cache_bytes: int = 0):
    args = zarrcrop.open(path)._layout.reader_args(cache_bytes)
    return _core.CropReader(**{**args, "root": b"mem://" + bytes(path), "fetch": fetch})


LAYOUTS = [
    ArraySpec(2, (3, 300, 520), (1, 128, 256), "uint16", Blosc("zstd", 3, "bitshuffle")),
    ArraySpec(2, (3, 300, 520), (1, 128, 256), "uint16", Blosc("lz4", 5, "shuffle")),
    ArraySpec(2, (3, 300, 520), (1, 128, 256), "uint16", Blosc("blosclz", 5, "noshuffle")),
    ArraySpec(2, (3, 300, 520), (1, 40, 40), "uint16", Blosc("zstd", 3, "shuffle")),
    ArraySpec(2, (3, 300, 520), (1, 128, 256), "uint16", None),
    ArraySpec(2, (3, 300, 520), (1, 128, 256), "uint16", None, layout="v2-numcodecs-zstd"),
    ArraySpec(
        3,
        (3, 300, 520),
        (1, 64, 128),
        "uint16",
        Blosc("zstd", 3, "bitshuffle"),
        layout="v3-sharding",
    ),
    ArraySpec(3, (3, 300, 520), (1, 128, 128), "float32", Blosc("lz4", 5, "bitshuffle")),
]


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote-core")
    out = []
    for i, spec in enumerate(LAYOUTS):
        path = root / f"a{i}.zarr"
        data = make_data(spec.shape, spec.dtype, seed=i, mode="runs" if i % 2 else "random")
        create_array(path, spec, data)
        out.append((path, data))
    return out


@settings(max_examples=40)
@given(
    which=st.integers(0, len(LAYOUTS) - 1),
    seed=st.integers(0, 2**32 - 1),
    batch=st.booleans(),
    cache=st.booleans(),
)
def test_remote_reads_equal_zarr_python(arrays, which, seed, batch, cache):
    path, data = arrays[which]
    rng = np.random.default_rng(seed)
    reader = remote_reader(path, DirFetcher(path), cache_bytes=(8 << 20) if cache else 0)
    za = zarr.open_array(str(path), mode="r")
    crop = [1, int(rng.integers(1, 300)), int(rng.integers(1, 520))]
    starts = np.array(
        [[int(rng.integers(0, data.shape[d] - crop[d] + 1)) for d in range(3)] for _ in range(4)],
        dtype=np.int64,
    )
    fill = np.zeros(1, data.dtype).tobytes()
    if batch:
        out = np.empty((len(starts), *crop), data.dtype)
        reader.read_crops(starts, crop, out, False, fill)
        for i, row in enumerate(starts):
            sel = tuple(slice(s, s + c) for s, c in zip(row, crop, strict=True))
            np.testing.assert_array_equal(out[i], za[sel])
    else:
        out = np.empty(crop, data.dtype)
        reader.read(list(starts[0]), [1, 1, 1], crop, out)
        sel = tuple(slice(s, s + c) for s, c in zip(starts[0], crop, strict=True))
        np.testing.assert_array_equal(out, za[sel])


def _zstd(tmp_path: Path, shards: bool = False, at_start: bool = False) -> tuple[Path, np.ndarray]:
    """2 frames of 1024x1024 uint16, chunks of 512x512 (about 200 KB each, read piecewise);
    with ``shards``, one shard per frame, its index at the end or the start."""
    path = tmp_path / "z.zarr"
    data = np.random.default_rng(7).integers(0, 50, size=(2, 1024, 1024), dtype=np.uint16)
    if not shards:
        spec = ArraySpec(2, data.shape, (1, 512, 512), "uint16", Blosc("zstd", 3, "bitshuffle"))
        create_array(path, spec, data)
        return path, data
    blosc = zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
    sharding = zarr.codecs.ShardingCodec(
        chunk_shape=(1, 512, 512),
        codecs=[zarr.codecs.BytesCodec(), blosc],
        index_location="start" if at_start else "end",
    )
    z = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=(1, 1024, 1024),
        dtype="uint16",
        serializer=sharding,
        compressors=None,
        zarr_format=3,
    )
    z[...] = data
    return path, data


def test_large_chunks_are_fetched_piecewise_in_few_requests(tmp_path):
    path, data = _zstd(tmp_path)
    fetch = DirFetcher(path)
    reader = remote_reader(path, fetch)
    out = np.empty((1, 100, 100), np.uint16)
    reader.read([0, 600, 600], [1, 1, 1], [1, 100, 100], out)
    np.testing.assert_array_equal(out[0], data[0, 600:700, 600:700])
    size = (path / "0.1.1").stat().st_size
    assert size > 64 * 1024
    # One chunk: its first read (header and more), then the needed blocks: not the whole file.
    assert 2 <= fetch.calls <= 4
    assert fetch.bytes < size


@pytest.mark.parametrize("at_start", [False, True])
def test_shards_read_their_index_once(tmp_path, at_start):
    path, data = _zstd(tmp_path, shards=True, at_start=at_start)
    fetch = DirFetcher(path)
    reader = remote_reader(path, fetch)
    zarrcrop.clear_index_cache()
    out = np.empty((1, 300, 300), np.uint16)
    reader.read([1, 400, 400], [1, 1, 1], [1, 300, 300], out)
    np.testing.assert_array_equal(out[0], data[1, 400:700, 400:700])
    first = fetch.calls
    reader.read([1, 400, 400], [1, 1, 1], [1, 300, 300], out)
    # The index is kept: the second read fetches inner chunks only.
    assert fetch.calls - first < first
    assert zarrcrop.index_cache_info()["hits"] >= 1


def test_missing_objects_read_as_the_fill_value(tmp_path):
    path, data = _zstd(tmp_path)
    os.remove(path / "1.0.1")
    reader = remote_reader(path, DirFetcher(path))
    out = np.empty((1, 1024, 1024), np.uint16)
    reader.read([1, 0, 0], [1, 1, 1], [1, 1024, 1024], out)
    expected = data[1].copy()
    expected[:512, 512:] = 0
    np.testing.assert_array_equal(out[0], expected)


def test_fetch_errors_name_the_chunk_and_keep_errno(tmp_path):
    path, _ = _zstd(tmp_path)
    fetch = DirFetcher(path)
    fetch.fail["0.0.1"] = PermissionError(errno.EACCES, "GET https://bucket/z.zarr/0.0.1: 403")
    reader = remote_reader(path, fetch)
    out = np.empty((1, 1024, 1024), np.uint16)
    with pytest.raises(PermissionError, match=r"0\.0\.1.*403") as info:
        reader.read([0, 0, 0], [1, 1, 1], [1, 1024, 1024], out)
    assert info.value.errno == errno.EACCES
    fetch.fail["0.0.1"] = ValueError("GET ...: the server sent bytes 5-9 of 10")
    with pytest.raises(zarrcrop.ChunkError, match=r"0\.0\.1.*bytes 5-9"):
        reader.read([0, 0, 0], [1, 1, 1], [1, 1024, 1024], out)


def test_a_short_reply_is_a_chunk_error_never_a_short_copy(tmp_path):
    path, _ = _zstd(tmp_path)
    fetch = DirFetcher(path)
    fetch.short.add("1.1.1")
    reader = remote_reader(path, fetch)
    out = np.empty((1, 300, 300), np.uint16)
    with pytest.raises(zarrcrop.ChunkError, match=r"1\.1\.1"):
        reader.read([1, 600, 600], [1, 1, 1], [1, 300, 300], out)


def test_an_object_that_changes_during_a_read_is_an_error_then_read_again(tmp_path):
    path, data = _zstd(tmp_path, shards=True)
    fetch = DirFetcher(path)
    reader = remote_reader(path, fetch)
    zarrcrop.clear_index_cache()
    out = np.empty((1, 300, 300), np.uint16)
    reader.read([0, 100, 100], [1, 1, 1], [1, 300, 300], out)  # the index is kept (v1)
    fetch.version = "v2"  # the shard was rewritten since
    with pytest.raises(zarrcrop.ChunkError, match="changed while it was read"):
        reader.read([0, 100, 100], [1, 1, 1], [1, 300, 300], out)
    # The stale index was dropped: the next read fetches it again and succeeds.
    reader.read([0, 100, 100], [1, 1, 1], [1, 300, 300], out)
    np.testing.assert_array_equal(out[0], data[0, 100:400, 100:400])


def _read_once(tmp_path: Path, fetcher: type, at: list[int]) -> tuple[Path, np.ndarray, Any, Any]:
    """The zstd array (no kept headers yet) behind a `fetcher`, read once: a 100x100 crop at
    `at` (the header of its chunk is kept then). (path, data, fetcher, reader)."""
    path, data = _zstd(tmp_path)
    zarrcrop.clear_index_cache()
    fetch = fetcher(path)
    reader = remote_reader(path, fetch)
    reader.read(at, [1, 1, 1], [1, 100, 100], np.empty((1, 100, 100), np.uint16))
    return path, data, fetch, reader


def test_headers_of_remote_chunks_are_kept(tmp_path):
    # A second read of the same chunks fetches only blocks: no first read, no round trip for
    # the header.
    _, data, fetch, reader = _read_once(tmp_path, DirFetcher, [0, 100, 100])
    out = np.empty((1, 100, 100), np.uint16)
    first = fetch.calls
    reader.read([0, 300, 300], [1, 1, 1], [1, 100, 100], out)
    np.testing.assert_array_equal(out[0], data[0, 300:400, 300:400])
    assert fetch.calls - first < first
    assert zarrcrop.index_cache_info()["hits"] >= 1


class SlowFetcher(DirFetcher):
    """A store far away: every request costs `delay` seconds, bytes are nearly free."""

    delay = 0.02

    def __call__(self, key, offset, length, from_end, out):
        import time

        time.sleep(self.delay)
        return super().__call__(key, offset, length, from_end, out)


def test_far_stores_get_whole_chunks_in_one_round_trip(tmp_path):
    # After a few requests have shown that a round trip costs more than moving a whole chunk,
    # chunks are fetched whole: one request each instead of a header, then blocks.
    path, data = _zstd(tmp_path)
    zarrcrop.set_index_cache_limit(0)  # no kept headers: every chunk needs its first read
    try:
        fetch = SlowFetcher(path)
        reader = remote_reader(path, fetch)
        out = np.empty((2, 1, 400, 400), np.uint16)
        starts = np.array([[0, 0, 0], [1, 600, 600]], dtype=np.int64)
        for _ in range(3):  # learn the costs (large block reads show the bandwidth)
            reader.read_crops(starts, [1, 400, 400], out, False, b"\0\0")
        calls = fetch.calls
        reader.read_crops(starts, [1, 400, 400], out, False, b"\0\0")
        # One request per chunk: 0.0.0, and 1.1.1 (600:1000 lies in chunk 1 of each axis).
        assert fetch.calls - calls == 2
        np.testing.assert_array_equal(out[1, 0], data[1, 600:1000, 600:1000])
    finally:
        zarrcrop.set_index_cache_limit(zarrcrop.DEFAULT_INDEX_CACHE_LIMIT)


class StreamingFetcher(DirFetcher):
    """A fetcher that streams (``streams = True``): the core passes ``progress`` and this one
    writes each reply in ``pieces`` steps, telling progress after each. ``fail_mid`` keys fail
    after half their bytes are told; ``mid_version`` keys report another version for those
    bytes than the reply ends with."""

    streams = True
    pieces = 4

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.progress_calls = 0
        self.fail_mid: set[str] = set()
        self.mid_version: dict[str, str] = {}
        self.kept: list = []  # progress objects, called again after their fetch
        # (key, array, value): before the last piece of key's reply, wait (up to 10 s) until
        # some element of array is no longer value; `seen` says whether one was.
        self.watch: tuple[str, np.ndarray, int] | None = None
        self.seen = False

    def __call__(self, key, offset, length, from_end, out, progress=None):
        if progress is None:
            return super().__call__(key, offset, length, from_end, out)
        self.kept.append(progress)
        scratch = bytearray(length)
        got = super().__call__(key, offset, length, from_end, memoryview(scratch))
        n = got[3]
        step = max(1, n // self.pieces)
        for done in range(step, n, step):
            out[done - step : done] = scratch[done - step : done]
            with self.lock:
                self.progress_calls += 1
            progress(done, self.mid_version.get(key, got[4]))
            if key in self.fail_mid and done >= n // 2:
                raise OSError(errno.ECONNRESET, f"GET {key}: connection reset mid-body")
        if self.watch is not None and self.watch[0] == key:
            import time

            _, array, value = self.watch
            deadline = time.monotonic() + 10
            while not self.seen and time.monotonic() < deadline:
                self.seen = bool((array != value).any())
                time.sleep(0.001)
        out[:n] = scratch[:n]
        return got


@settings(max_examples=30)
@given(
    which=st.integers(0, len(LAYOUTS) - 1),
    seed=st.integers(0, 2**32 - 1),
    pieces=st.integers(1, 40),
)
def test_streamed_replies_read_equal_to_zarr_python(arrays, which, seed, pieces):
    # Blocks are decoded as their bytes are told in (part by part), whatever the steps.
    path, data = arrays[which]
    rng = np.random.default_rng(seed)
    zarrcrop.clear_index_cache()
    fetch = StreamingFetcher(path)
    fetch.pieces = pieces
    reader = remote_reader(path, fetch)
    za = zarr.open_array(str(path), mode="r")
    crop = [1, int(rng.integers(1, 300)), int(rng.integers(1, 520))]
    starts = np.array(
        [[int(rng.integers(0, data.shape[d] - crop[d] + 1)) for d in range(3)] for _ in range(3)],
        dtype=np.int64,
    )
    out = np.empty((len(starts), *crop), data.dtype)
    for _ in range(2):  # the second time with kept headers: only blocks fetched, streamed
        reader.read_crops(starts, crop, out, False, np.zeros(1, data.dtype).tobytes())
        for i, row in enumerate(starts):
            sel = tuple(slice(s, s + c) for s, c in zip(row, crop, strict=True))
            np.testing.assert_array_equal(out[i], za[sel])


def _streamed(tmp_path: Path) -> tuple[Path, np.ndarray, StreamingFetcher, Any]:
    """The zstd array behind a StreamingFetcher whose reader has read 0.1.1 once (its header
    is kept, so the next read fetches its blocks as one streamed request)."""
    return _read_once(tmp_path, StreamingFetcher, [0, 600, 600])


def test_blocks_are_handed_out_as_a_reply_streams_in(tmp_path):
    _, data, fetch, reader = _streamed(tmp_path)
    out = np.empty((1, 400, 400), np.uint16)
    before = fetch.progress_calls
    reader.read([0, 520, 520], [1, 1, 1], [1, 400, 400], out)
    np.testing.assert_array_equal(out[0], data[0, 520:920, 520:920])
    assert fetch.progress_calls > before  # the block request streamed
    # A progress object told after its fetch has returned does nothing (its buffer may be
    # another read's by then).
    for p in fetch.kept:
        p(1 << 40, "v1")
    reader.read([0, 520, 520], [1, 1, 1], [1, 400, 400], out)
    np.testing.assert_array_equal(out[0], data[0, 520:920, 520:920])


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        # The reply fails after half of it was told: blocks decoded from that half do not
        # make the read succeed; the error names the chunk and keeps the errno.
        ("fail_mid", ConnectionResetError, r"0\.1\.1.*mid-body"),
        # Bytes told as another version's (a rewritten object): not decoded; the reply's
        # version then fails the read (the object changed).
        ("mid_version", zarrcrop.ChunkError, r"0\.1\.1.*changed while it was read"),
    ],
)
def test_a_reply_that_goes_wrong_while_streaming_fails_the_read(tmp_path, fault, error, match):
    _, data, fetch, reader = _streamed(tmp_path)
    if fault == "fail_mid":
        fetch.fail_mid.add("0.1.1")
    else:
        fetch.mid_version["0.1.1"] = fetch.version = "v2"
    out = np.empty((1, 400, 400), np.uint16)
    with pytest.raises(error, match=match):
        reader.read([0, 520, 520], [1, 1, 1], [1, 400, 400], out)
    # The next read, with the store well again, is right.
    fetch.fail_mid.clear()
    fetch.mid_version.clear()
    reader.read([0, 520, 520], [1, 1, 1], [1, 400, 400], out)
    np.testing.assert_array_equal(out[0], data[0, 520:920, 520:920])


def test_the_first_blocks_reach_the_output_before_the_reply_ends(tmp_path):
    # The crop lies in one chunk; its blocks come in one request. Before that reply's last
    # piece is written, the blocks told so far are decoded and stitched into the output.
    _, data, fetch, reader = _streamed(tmp_path)
    fetch.pieces = 8
    out = np.full((1, 400, 400), 0xFFFF, np.uint16)  # the data is < 50
    fetch.watch = ("0.1.1", out, 0xFFFF)
    reader.read([0, 600, 600], [1, 1, 1], [1, 400, 400], out)
    assert fetch.seen
    np.testing.assert_array_equal(out[0], data[0, 600:1000, 600:1000])


def test_a_shards_inner_chunks_are_fetched_in_one_request(tmp_path):
    # Once the index and the inner chunks' headers are kept, the blocks of the four inner
    # chunks of shard 0 come in one merged request (not one per inner chunk), streamed into
    # each chunk's decoding; equal to the data either way.
    path, data = _zstd(tmp_path, shards=True)
    zarrcrop.clear_index_cache()
    fetch = StreamingFetcher(path)
    reader = remote_reader(path, fetch)
    out = np.empty((1, 1024, 1024), np.uint16)
    reader.read([0, 0, 0], [1, 1, 1], [1, 1024, 1024], out)
    np.testing.assert_array_equal(out[0], data[0])
    calls = fetch.calls
    out[:] = 0
    reader.read([0, 0, 0], [1, 1, 1], [1, 1024, 1024], out)
    np.testing.assert_array_equal(out[0], data[0])
    assert fetch.calls - calls == 1
    # A failure of the merged request fails the read, naming the shard.
    fetch.fail["c/0/0/0"] = OSError(errno.EIO, "GET c/0/0/0: 500 after 5 tries")
    with pytest.raises(OSError, match=r"c/0/0/0.*500"):
        reader.read([0, 0, 0], [1, 1, 1], [1, 1024, 1024], out)
    del fetch.fail["c/0/0/0"]
    part = np.empty((1, 900, 900), np.uint16)
    reader.read([0, 100, 100], [1, 1, 1], [1, 900, 900], part)
    np.testing.assert_array_equal(part[0], data[0, 100:1000, 100:1000])


class FarStreamingFetcher(StreamingFetcher):
    """A far store (each request costs `delay` s) that streams: chunks come whole in one round
    trip once the costs are learned, and are decoded as their first read streams in."""

    delay = 0.02

    def __call__(self, key, offset, length, from_end, out, progress=None):
        import time

        time.sleep(self.delay)
        return super().__call__(key, offset, length, from_end, out, progress)


@pytest.fixture
def no_kept_headers():
    zarrcrop.set_index_cache_limit(0)  # every chunk needs its first read
    try:
        yield
    finally:
        zarrcrop.set_index_cache_limit(zarrcrop.DEFAULT_INDEX_CACHE_LIMIT)


def _far(tmp_path: Path) -> tuple[np.ndarray, FarStreamingFetcher, Any]:
    """The zstd array behind a FarStreamingFetcher that has learned the costs: its chunks'
    first reads are whole (one request each)."""
    path, data = _zstd(tmp_path)
    fetch = FarStreamingFetcher(path)
    reader = remote_reader(path, fetch)
    out = np.empty((2, 1, 400, 400), np.uint16)
    starts = np.array([[0, 0, 0], [1, 600, 600]], dtype=np.int64)
    for _ in range(3):
        reader.read_crops(starts, [1, 400, 400], out, False, b"\0\0")
    calls = fetch.calls
    reader.read_crops(starts, [1, 400, 400], out, False, b"\0\0")
    assert fetch.calls - calls == 2  # whole, one request per chunk
    return data, fetch, reader


def test_chunks_decode_while_their_first_read_streams_in(tmp_path, no_kept_headers):
    data, fetch, reader = _far(tmp_path)
    fetch.pieces = 8
    out = np.full((1, 400, 400), 0xFFFF, np.uint16)
    fetch.watch = ("1.1.1", out, 0xFFFF)
    reader.read([1, 600, 600], [1, 1, 1], [1, 400, 400], out)
    assert fetch.seen  # blocks stitched before the reply's last piece was written
    np.testing.assert_array_equal(out[0], data[1, 600:1000, 600:1000])


def test_a_streamed_first_read_must_match_its_header_and_version(tmp_path, no_kept_headers):
    data, fetch, reader = _far(tmp_path)
    out = np.full((1, 400, 400), 0xFFFF, np.uint16)
    # The reply ends as another version than it streamed as: the object changed. (The watch
    # holds the reply's end until blocks were decoded: the streamed route was taken.)
    fetch.mid_version["1.1.1"] = "v0"
    fetch.watch = ("1.1.1", out, 0xFFFF)
    with pytest.raises(zarrcrop.ChunkError, match=r"1\.1\.1.*changed while it was read"):
        reader.read([1, 600, 600], [1, 1, 1], [1, 400, 400], out)
    assert fetch.seen
    fetch.mid_version.clear()
    # A reply cut short after its header: an error naming the chunk, never a short copy.
    fetch.short.add("1.1.1")
    out[:] = 0xFFFF
    fetch.seen = False
    with pytest.raises(zarrcrop.ChunkError, match=r"1\.1\.1.*the reply ended after"):
        reader.read([1, 600, 600], [1, 1, 1], [1, 400, 400], out)
    assert fetch.seen
    fetch.short.clear()
    fetch.watch = None
    reader.read([1, 600, 600], [1, 1, 1], [1, 400, 400], out)
    np.testing.assert_array_equal(out[0], data[1, 600:1000, 600:1000])


def test_streamed_first_reads_beyond_the_read_budget_do_not_wait_for_each_other(tmp_path):
    # A batch whose chunks' first reads need far more than the read budget: reads that hold
    # their bytes for the window's decoding leave the budget once they have ended, so the
    # reads still queued start (they used to wait for budget those held: a hang). Run in a
    # child with a time limit, so that a hang fails the test instead of the suite.
    path, data = _zstd(tmp_path)
    np.save(tmp_path / "data.npy", data)
    script = f"""
import sys, numpy as np
sys.path[:0] = {[str(Path(__file__).parent)]!r}
import zarrcrop
from zarrcrop import _core
import test_remote_core as t
from pathlib import Path
zarrcrop.set_index_cache_limit(0)
path = Path({str(path)!r})
fetch = t.FarStreamingFetcher(path)
fetch.delay = 0.005
reader = t.remote_reader(path, fetch)
starts = np.array([[f, y, x] for f in (0, 1) for y in (0, 300, 600) for x in (0, 300, 600)])
out = np.empty((len(starts), 1, 400, 400), np.uint16)
for _ in range(3):  # learn the costs: first reads whole
    reader.read_crops(starts, [1, 400, 400], out, False, b"\\0\\0")
_core._testing.set_read_budget(1 << 20)  # about 2 chunks of 512 KiB
reader.read_crops(starts, [1, 400, 400], out, False, b"\\0\\0")
data = np.load(Path({str(tmp_path)!r}) / "data.npy")
for i, (f, y, x) in enumerate(starts):
    assert (out[i, 0] == data[f, y : y + 400, x : x + 400]).all()
print("ok")
"""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_prefetch_fetches_a_shards_inner_chunks_in_one_request(tmp_path):
    # With the index and headers kept, a prefetch of a whole frame (four inner chunks of one
    # shard) asks for their blocks in one merged request; the read then asks for nothing.
    path, data = _zstd(tmp_path, shards=True)
    zarrcrop.clear_index_cache()
    fetch = DirFetcher(path)
    reader = remote_reader(path, fetch)
    out = np.empty((1, 1, 1024, 1024), np.uint16)
    starts = np.array([[0, 0, 0]], dtype=np.int64)
    reader.read_crops(starts, [1, 1024, 1024], out, False, b"\0\0")
    calls = fetch.calls
    assert reader.prefetch(starts, [1, 1024, 1024], False, 64 << 20) > 0
    _core._testing.wait_fetch_ahead()
    assert fetch.calls - calls == 1
    out[:] = 0
    reader.read_crops(starts, [1, 1024, 1024], out, False, b"\0\0")
    assert fetch.calls - calls == 1
    np.testing.assert_array_equal(out[0, 0], data[0])
