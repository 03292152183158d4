"""Regression tests for findings of the fuzz harness (fuzz/fuzz_chunks.py) and the hostile-input
tests of issue 7. Each case rebuilds the bad input in code.

Finding 1 (fixed): read_crops computed start + crop_shape in int64 without an overflow check
(signed overflow, no IndexError, uninitialised output); now such crops count as reaching past
the array.

Finding 2 (fixed, found by the native leak check fuzz/native/leak_check.cpp under LeakSanitizer
and valgrind): ShardReader had no destructor, so every reader of a sharded array leaked its
cache of parsed shard indexes (up to 256 indexes of 16 bytes per inner chunk) when dropped.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import zarr
import zarrcrop

# starts whose start + crop_shape overflows int64 (or sits at its edge)
HUGE_STARTS = {
    "int64-max": 2**63 - 1,
    "int64-max-minus-1": 2**63 - 2,
}


@pytest.mark.parametrize("start", HUGE_STARTS.values(), ids=HUGE_STARTS.keys())
@pytest.mark.parametrize("place", ["both", "row", "col"])
def test_read_crops_overflowing_start_raises_index_error(small, start, place):
    starts = np.zeros((1, 2), dtype=np.int64)
    if place in ("both", "row"):
        starts[0, 0] = start
    if place in ("both", "col"):
        starts[0, 1] = start
    with pytest.raises(IndexError):
        small.read_crops(starts, (2, 2), boundary="error")


@pytest.mark.parametrize("start", HUGE_STARTS.values(), ids=HUGE_STARTS.keys())
def test_read_crops_overflowing_start_fills(small, start):
    starts = np.full((1, 2), start, dtype=np.int64)
    got = small.read_crops(starts, (2, 2), boundary="fill", fill=7)
    np.testing.assert_array_equal(got, np.full((1, 2, 2), 7, dtype=np.int16))


@pytest.mark.parametrize("boundary", ["error", "fill"])
def test_read_crops_int64_min_start(small, boundary):
    """Far outside at the low end: IndexError, or all fill (no overflow: start + shape fits)."""
    starts = np.full((1, 2), -(2**63), dtype=np.int64)
    if boundary == "error":
        with pytest.raises(IndexError):
            small.read_crops(starts, (2, 2), boundary=boundary)
    else:
        got = small.read_crops(starts, (2, 2), boundary=boundary, fill=7)
        np.testing.assert_array_equal(got, np.full((1, 2, 2), 7, dtype=np.int16))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="ASan's quarantine holds freed memory, so RSS grows by design",
)
def test_dropped_sharded_readers_free_their_shard_indexes(tmp_path):
    # One shard of 64 x 64 = 4096 inner chunks: a 64 KiB index, parsed and cached per reader.
    path = tmp_path / "sharded.zarr"
    za = zarr.create_array(
        store=str(path), shape=(256, 256), chunks=(4, 4), shards=(256, 256), dtype="uint8",
        zarr_format=3, compressors=None, fill_value=0,
    )  # fmt: skip
    za[...] = np.arange(256 * 256, dtype=np.uint8).reshape(256, 256)

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def open_read_drop(n: int) -> None:
        for _ in range(n):
            ca = zarrcrop.open(path)
            assert ca[5, 7] == za[5, 7]
            del ca
        gc.collect()

    open_read_drop(20)  # warm up
    before = rss()
    open_read_drop(300)  # leaked about 300 x 64 KiB (18.7 MiB measured) before the fix
    growth = rss() - before
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 300 sharded readers"
