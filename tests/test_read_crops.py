"""read_crops: batches of same-shape crops, compared with per-crop zarr-python reads; boundary
modes, fill values, ``out=``, argument checks, and the regressions the fuzz harnesses found
(starts and crop shapes at the int64 edges, empty crops, 0-d arrays).

Argument fuzzing: tests/test_read_crops_fuzz.py. Outputs larger than the CPU cache (streamed):
tests/test_out.py.
"""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import expected_crops
from hypothesis import given
from hypothesis import strategies as st

COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


def _video(tmp_path, *, fill_value=0, zarr_format=2, dtype="uint8"):
    """A small (T, C, H, W) clip with some chunks left unwritten (fill value)."""
    path = tmp_path / f"clip_v{zarr_format}_{np.dtype(dtype).name}.zarr"
    shape = (3, 3, 70, 90)
    rng = np.random.default_rng(7)
    data = rng.integers(0, 200, size=shape).astype(dtype)
    kwargs = {"compressors": COMPRESSOR}
    if zarr_format == 3:
        kwargs = {
            "serializer": zarr.codecs.BytesCodec(),
            "compressors": zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
        }
    za = zarr.create_array(
        store=str(path),
        shape=shape,
        chunks=(1, 3, 32, 40),
        dtype=dtype,
        zarr_format=zarr_format,
        fill_value=fill_value,
        **kwargs,
    )
    za[0] = data[0]
    za[1, :, :32, :] = data[1, :, :32, :]  # frame 1 rows >= 32: missing chunks
    data[1, :, 32:, :] = fill_value
    za[2] = data[2]
    return path, data


@pytest.mark.native
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_read_crops_equals_per_crop_zarr_reads(tmp_path, zarr_format):
    path, _ = _video(tmp_path, zarr_format=zarr_format)
    arr = zarrcrop.open(path)
    za = zarr.open_array(str(path), mode="r")
    assert arr.native
    rng = np.random.default_rng(0)
    shape = (1, 3, 25, 33)
    starts = np.stack(
        [
            rng.integers(0, 3, 40),
            np.zeros(40, int),
            rng.integers(0, 70 - 25 + 1, 40),
            rng.integers(0, 90 - 33 + 1, 40),
        ],
        axis=1,
    )
    got = arr.read_crops(starts, shape)
    assert got.shape == (40, *shape)
    assert got.dtype == za.dtype
    for i, (t, c, y, x) in enumerate(starts):
        np.testing.assert_array_equal(got[i], za[t : t + 1, c : c + 3, y : y + 25, x : x + 33])


@pytest.mark.native
def test_duplicate_and_overlapping_crops(tmp_path):
    path, data = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 5, 5], [0, 0, 5, 5], [0, 0, 6, 7], [2, 0, 30, 40], [0, 0, 5, 5]])
    got = arr.read_crops(starts, (1, 3, 40, 50))
    np.testing.assert_array_equal(got, expected_crops(data, starts, (1, 3, 40, 50), 0))
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[0], got[4])


@pytest.mark.native
def test_read_crops_into_out(tmp_path):
    path, data = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 0, 0], [1, 0, 20, 30], [2, 0, 45, 57]])
    out = np.full((3, 1, 3, 25, 33), 77, dtype=np.uint8)
    result = arr.read_crops(starts, (1, 3, 25, 33), out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected_crops(data, starts, (1, 3, 25, 33), 0))


@pytest.mark.native
def test_read_crops_out_validation(tmp_path):
    path, _ = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="shape"):
        arr.read_crops(starts, (1, 3, 8, 8), out=np.empty((3, 1, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        arr.read_crops(starts, (1, 3, 8, 8), out=np.empty((2, 1, 3, 8, 8), np.int16))
    with pytest.raises(ValueError, match="contiguous"):
        arr.read_crops(starts, (1, 3, 8, 8), out=np.empty((2, 1, 3, 8, 16), np.uint8)[..., ::2])


@pytest.mark.native
def test_torch_out(tmp_path):
    torch = pytest.importorskip("torch")
    path, data = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 3, 4], [2, 0, 10, 11]])
    out = torch.empty((2, 1, 3, 16, 16), dtype=torch.uint8)
    assert arr.read_crops(starts, (1, 3, 16, 16), out=out) is out
    np.testing.assert_array_equal(out.numpy(), expected_crops(data, starts, (1, 3, 16, 16), 0))


@pytest.mark.native
def test_boundary_error_names_the_crop(tmp_path):
    path, _ = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 0, 0], [1, 0, 60, 0]])
    with pytest.raises(IndexError, match=r"crop 1 starting at \(1, 0, 60, 0\)"):
        arr.read_crops(starts, (1, 3, 20, 20))
    with pytest.raises(IndexError, match="crop 0"):
        arr.read_crops(np.array([[0, 0, -1, 0]]), (1, 3, 20, 20))


@pytest.mark.native
@pytest.mark.parametrize("fill", [None, 255])
def test_boundary_fill(tmp_path, fill):
    path, data = _video(tmp_path, fill_value=9)
    arr = zarrcrop.open(path)
    starts = np.array(
        [[0, 0, -10, -10], [2, 0, 60, 80], [1, 0, -40, 70], [0, 0, 100, 100], [-1, 0, 0, 0]]
    )
    got = arr.read_crops(starts, (1, 3, 30, 30), boundary="fill", fill=fill)
    expected = expected_crops(data, starts, (1, 3, 30, 30), 9 if fill is None else fill)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.native
def test_float_nan_fill(tmp_path):
    path, data = _video(tmp_path, fill_value=np.nan, dtype="float32")
    arr = zarrcrop.open(path)
    starts = np.array([[1, 0, 20, -5], [0, 0, 50, 70]])
    got = arr.read_crops(starts, (1, 3, 30, 30), boundary="fill")
    expected = expected_crops(data, starts, (1, 3, 30, 30), np.nan)
    np.testing.assert_array_equal(got, expected)  # NaN positions must agree


@pytest.mark.native
def test_argument_validation(tmp_path):
    path, _ = _video(tmp_path)
    arr = zarrcrop.open(path)
    with pytest.raises(ValueError, match="boundary"):
        arr.read_crops(np.zeros((1, 4), int), (1, 3, 4, 4), boundary="wrap")
    with pytest.raises(ValueError, match="one entry per array dimension"):
        arr.read_crops(np.zeros((1, 4), int), (3, 4, 4))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        arr.read_crops(np.zeros((1, 3), int), (1, 3, 4, 4))
    with pytest.raises(ValueError, match="integers"):
        arr.read_crops(np.zeros((1, 4)), (1, 3, 4, 4))
    assert arr.read_crops(np.zeros((0, 4), int), (1, 3, 4, 4)).shape == (0, 1, 3, 4, 4)


def test_fallback_array_read_crops(tmp_path):
    """Arrays read through zarr-python give the same batches, boundary modes included."""
    path = tmp_path / "delta.zarr"
    data = np.arange(2 * 30 * 40, dtype="int32").reshape(2, 30, 40)
    za = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=(1, 16, 16),
        dtype="int32",
        zarr_format=2,
        filters=[numcodecs.Delta(dtype="int32")],
        compressors=COMPRESSOR,
        fill_value=-1,
    )
    za[...] = data
    arr = zarrcrop.open(path)
    assert not arr.native
    starts = np.array([[0, -3, 5], [1, 20, 30], [1, 0, 0]])
    got = arr.read_crops(starts, (1, 12, 12), boundary="fill")
    np.testing.assert_array_equal(got, expected_crops(data, starts, (1, 12, 12), -1))
    with pytest.raises(IndexError, match="crop 0"):
        arr.read_crops(starts, (1, 12, 12))
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(path, strict=True)


@pytest.mark.native
@given(
    data=st.data(),
    n=st.integers(0, 12),
    threads=st.sampled_from([1, 2, 3]),
)
def test_read_crops_property(tmp_path_factory, data, n, threads):
    path = tmp_path_factory.getbasetemp() / "prop_crops.zarr"
    if not path.exists():
        _make_prop_array(path)
    arr = zarrcrop.open(path)
    full = zarr.open_array(str(path), mode="r")[...]
    zarrcrop.set_num_threads(threads)
    shape = tuple(
        data.draw(st.integers(0, n_ + 4), label=f"crop{d}") for d, n_ in enumerate(full.shape)
    )
    starts = np.array(
        [[data.draw(st.integers(-4, n_), label="start") for n_ in full.shape] for _ in range(n)],
        dtype=np.int64,
    ).reshape(n, full.ndim)
    got = arr.read_crops(starts, shape, boundary="fill", fill=5)
    np.testing.assert_array_equal(got, expected_crops(full, starts, shape, 5))
    inside = [
        i
        for i, s in enumerate(starts)
        if all(0 <= a and a + c <= m for a, c, m in zip(s, shape, full.shape, strict=True))
    ]
    got_inside = arr.read_crops(starts[inside], shape)
    np.testing.assert_array_equal(got_inside, expected_crops(full, starts[inside], shape, 5))


def _make_prop_array(path):
    rng = np.random.default_rng(11)
    data = rng.integers(0, 1000, size=(4, 23, 31)).astype("int16")
    za = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=(3, 7, 10),
        dtype="int16",
        zarr_format=2,
        compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1, blocksize=64),
        fill_value=-7,
    )
    za[:3] = data[:3]  # the last frame stays missing (fill value)


# --------------------------------------------------------------------------------------
# Bad arguments: a clean exception, out= left untouched
# --------------------------------------------------------------------------------------

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


@pytest.mark.native
@pytest.mark.parametrize("case", BAD_CROP_ARGS)
@pytest.mark.parametrize("boundary", ["error", "fill"])
def test_bad_read_crops_arguments_raise(small, case, boundary):
    starts, shape, out = BAD_CROP_ARGS[case]
    before = None if out is None else out.copy()
    with pytest.raises((ValueError, TypeError, IndexError, OverflowError)):
        small.read_crops(starts, shape, out=out, boundary=boundary)
    if out is not None:
        np.testing.assert_array_equal(out, before)


# --------------------------------------------------------------------------------------
# Regressions of the fuzz harnesses (fuzz/fuzz_chunks.py, tests/test_read_crops_fuzz.py)
# --------------------------------------------------------------------------------------

# Finding 1 (fixed): read_crops computed start + crop_shape in int64 without an overflow check
# (signed overflow, no IndexError, uninitialised output); now such crops count as reaching past
# the array.

# starts whose start + crop_shape overflows int64 (or sits at its edge)
HUGE_STARTS = {
    "int64-max": 2**63 - 1,
    "int64-max-minus-1": 2**63 - 2,
}


@pytest.mark.native
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


@pytest.mark.native
@pytest.mark.parametrize("start", HUGE_STARTS.values(), ids=HUGE_STARTS.keys())
def test_read_crops_overflowing_start_fills(small, start):
    starts = np.full((1, 2), start, dtype=np.int64)
    got = small.read_crops(starts, (2, 2), boundary="fill", fill=7)
    np.testing.assert_array_equal(got, np.full((1, 2, 2), 7, dtype=np.int16))


@pytest.mark.native
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


@pytest.mark.parametrize(
    "native",
    [pytest.param(True, id="native", marks=pytest.mark.native), pytest.param(False, id="fallback")],
)
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


@pytest.mark.native
def test_starts_with_missing_coordinates_are_rejected(small):
    with pytest.raises(ValueError, match="starts"):
        small.read_crops(np.zeros((5, 0), dtype=np.int64), (2, 2))
    assert small.read_crops([], (2, 2)).shape == (0, 2, 2)


@pytest.mark.native
@pytest.mark.parametrize("boundary", ["error", "fill"])
def test_uint64_starts_past_int64_are_rejected(small, boundary):
    starts = np.array([[2**64 - 1, 0]], dtype=np.uint64)  # would wrap to -1
    with pytest.raises(ValueError, match="int64"):
        small.read_crops(starts, (2, 2), boundary=boundary)
    ok = np.array([[2, 3]], dtype=np.uint64)
    np.testing.assert_array_equal(small.read_crops(ok, (2, 2))[0], small[2:4, 3:5])


@pytest.mark.native
@pytest.mark.parametrize("shape", [(2.5, 2), (2.0, 2), ("2", 2), "22", b"2", (None, 2)])
def test_non_integer_crop_shapes_are_rejected(small, shape):
    with pytest.raises(TypeError, match="crop shape"):
        small.read_crops(np.zeros((1, 2), dtype=np.int64), shape)


@pytest.mark.native
def test_native_crop_byte_count_cannot_wrap(small):
    reader = small._reader
    out = np.empty((0,), dtype=np.int16)
    with pytest.raises(ValueError, match="bytes"):
        reader.read_crops(np.zeros((1, 2), dtype=np.int64), [2**62, 2**62], out, True, bytes(2))
