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

import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import rss_bytes, rss_check

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


@rss_check
def test_dropped_sharded_readers_free_their_shard_indexes(tmp_path):
    # One shard of 64 x 64 = 4096 inner chunks: a 64 KiB index, parsed and cached per reader.
    path = tmp_path / "sharded.zarr"
    za = zarr.create_array(
        store=str(path), shape=(256, 256), chunks=(4, 4), shards=(256, 256), dtype="uint8",
        zarr_format=3, compressors=None, fill_value=0,
    )  # fmt: skip
    za[...] = np.arange(256 * 256, dtype=np.uint8).reshape(256, 256)

    def open_read_drop(n: int) -> None:
        for _ in range(n):
            ca = zarrcrop.open(path)
            assert ca[5, 7] == za[5, 7]
            del ca
        gc.collect()

    open_read_drop(20)  # warm up
    before = rss_bytes()
    open_read_drop(300)  # leaked about 300 x 64 KiB (18.7 MiB measured) before the fix
    growth = rss_bytes() - before
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 300 sharded readers"


# ------------------------------------------------------------------ tests/test_selection_fuzz.py
# Findings 3-7, of the argument fuzzing of read_crops (all fixed):
#   3. An empty crop (a zero in its shape) starting outside the array raised IndexError in the
#      Python fallback but not natively (the native reader skipped bounds checks for empty crops).
#   4. starts of shape (N, 0) (N crops of a 0-d array) were treated as no crops at all; starts
#      of shape (N, 0) for an n-d array were accepted as no crops instead of rejected.
#   5. uint64 starts past int64 wrapped around to negative starts (with boundary="fill": a
#      silently wrong all-fill result).
#   6. Float crop shapes were truncated (2.5 -> 2) and a string was parsed ("12" -> 12).
#   7. The native crop byte count could wrap around (shape (2**62, 2**62) -> 0 bytes) and match
#      an empty output buffer.


def _fallback(ca):
    import zarrcrop

    fb = zarrcrop.CropArray(ca.zarr)
    fb._reader = None  # the zarr-python path
    return fb


@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
@pytest.mark.parametrize("start", [(-1, 0), (0, 13), (11, 0), (2**63 - 1, 0), (-(2**63), 0)])
def test_empty_crop_outside_is_bounds_checked(small, native, start):
    ca = small if native else _fallback(small)
    starts = np.array([start], dtype=np.int64)
    with pytest.raises(IndexError):
        ca.read_crops(starts, (0, 2), boundary="error")
    assert ca.read_crops(starts, (0, 2), boundary="fill").shape == (1, 0, 2)
    # at the array's end an empty crop is inside
    assert ca.read_crops(np.array([[10, 12]]), (0, 0)).shape == (1, 0, 0)


def test_zero_d_starts_mean_one_crop_each(tmp_path):
    import zarr
    import zarrcrop

    za = zarr.create_array(store=str(tmp_path / "z.zarr"), shape=(), dtype="int32", zarr_format=2)
    za[...] = 5
    for ca in (zarrcrop.open(tmp_path / "z.zarr"), _fallback(zarrcrop.open(tmp_path / "z.zarr"))):
        np.testing.assert_array_equal(ca.read_crops(np.zeros((3, 0), dtype=np.int64), ()), [5] * 3)
        assert ca.read_crops([], ()).shape == (0,)


def test_starts_with_missing_coordinates_are_rejected(small):
    with pytest.raises(ValueError, match="starts"):
        small.read_crops(np.zeros((5, 0), dtype=np.int64), (2, 2))
    assert small.read_crops([], (2, 2)).shape == (0, 2, 2)


@pytest.mark.parametrize("boundary", ["error", "fill"])
def test_uint64_starts_past_int64_are_rejected(small, boundary):
    starts = np.array([[2**64 - 1, 0]], dtype=np.uint64)  # would wrap to -1
    with pytest.raises(ValueError, match="int64"):
        small.read_crops(starts, (2, 2), boundary=boundary)
    ok = np.array([[2, 3]], dtype=np.uint64)
    np.testing.assert_array_equal(small.read_crops(ok, (2, 2))[0], small[2:4, 3:5])


@pytest.mark.parametrize("shape", [(2.5, 2), (2.0, 2), ("2", 2), "22", b"2", (None, 2)])
def test_non_integer_crop_shapes_are_rejected(small, shape):
    with pytest.raises(TypeError, match="crop shape"):
        small.read_crops(np.zeros((1, 2), dtype=np.int64), shape)


def test_native_crop_byte_count_cannot_wrap(small):
    reader = small._reader
    out = np.empty((0,), dtype=np.int16)
    with pytest.raises(ValueError, match="bytes"):
        reader.read_crops(np.zeros((1, 2), dtype=np.int64), [2**62, 2**62], out, True, bytes(2))


# 8. zarr-python (3.1) wraps negative entries of integer index arrays around in place: reading
#    ca[np.array([-1])] through the fallback changed the caller's array to [n - 1] (and a second
#    read with an out-of-range [-n - 1] then succeeded). zarrcrop now hands zarr-python copies.
def test_fancy_selection_leaves_index_arrays_alone(small):
    expected = small.zarr[...]
    index = np.array([-1, -3])
    for read in (
        lambda: small[index],
        lambda: small[index, 2:4],
        lambda: small.oindex[index, index],
        lambda: small.vindex[index, index],
        lambda: small.read((index, slice(None)), out=np.empty((2, 12), dtype=np.int16)),
    ):
        got = read()
        assert got is not None
        np.testing.assert_array_equal(index, [-1, -3])
    np.testing.assert_array_equal(small.oindex[index, index], expected[np.ix_([9, 7], [11, 9])])
    with pytest.raises(IndexError):
        small[np.array([-11])]
    with pytest.raises(IndexError):
        small[np.array([-11])]  # still out of range the second time


# 9. cache_bytes past the native size_t range gave pybind11's raw "incompatible constructor
#    arguments" TypeError; a float was truncated.
@pytest.mark.parametrize("bad", [2**63, 2**64, 2**70, -1])
def test_out_of_range_cache_bytes_raise_value_error(small, bad):
    import zarrcrop

    with pytest.raises(ValueError, match="cache_bytes"):
        zarrcrop.CropArray(small.zarr, cache_bytes=bad)


def test_non_integer_cache_bytes_raise_type_error(small):
    import zarrcrop

    with pytest.raises(TypeError):
        zarrcrop.CropArray(small.zarr, cache_bytes=1.5)
    assert zarrcrop.CropArray(small.zarr, cache_bytes=np.int64(1 << 20)).native
