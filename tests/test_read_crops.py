"""read_crops: batches of same-shape crops, compared with per-crop zarr-python reads."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
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


def _expected(data, starts, shape, fill):
    out = np.full((len(starts), *shape), fill, dtype=data.dtype)
    for i, start in enumerate(starts):
        src, dst = [], []
        for s, c, n in zip(start, shape, data.shape, strict=True):
            lo, hi = max(s, 0), min(s + c, n)
            if hi <= lo:
                break
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
        else:
            out[(i, *dst)] = data[tuple(src)]
    return out


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


def test_duplicate_and_overlapping_crops(tmp_path):
    path, data = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 5, 5], [0, 0, 5, 5], [0, 0, 6, 7], [2, 0, 30, 40], [0, 0, 5, 5]])
    got = arr.read_crops(starts, (1, 3, 40, 50))
    np.testing.assert_array_equal(got, _expected(data, starts, (1, 3, 40, 50), 0))
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[0], got[4])


def test_read_crops_into_out(tmp_path):
    path, data = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 0, 0], [1, 0, 20, 30], [2, 0, 45, 57]])
    out = np.full((3, 1, 3, 25, 33), 77, dtype=np.uint8)
    result = arr.read_crops(starts, (1, 3, 25, 33), out=out)
    assert result is out
    np.testing.assert_array_equal(out, _expected(data, starts, (1, 3, 25, 33), 0))


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


def test_torch_out(tmp_path):
    torch = pytest.importorskip("torch")
    path, data = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 3, 4], [2, 0, 10, 11]])
    out = torch.empty((2, 1, 3, 16, 16), dtype=torch.uint8)
    assert arr.read_crops(starts, (1, 3, 16, 16), out=out) is out
    np.testing.assert_array_equal(out.numpy(), _expected(data, starts, (1, 3, 16, 16), 0))


def test_boundary_error_names_the_crop(tmp_path):
    path, _ = _video(tmp_path)
    arr = zarrcrop.open(path)
    starts = np.array([[0, 0, 0, 0], [1, 0, 60, 0]])
    with pytest.raises(IndexError, match=r"crop 1 starting at \(1, 0, 60, 0\)"):
        arr.read_crops(starts, (1, 3, 20, 20))
    with pytest.raises(IndexError, match="crop 0"):
        arr.read_crops(np.array([[0, 0, -1, 0]]), (1, 3, 20, 20))


@pytest.mark.parametrize("fill", [None, 255])
def test_boundary_fill(tmp_path, fill):
    path, data = _video(tmp_path, fill_value=9)
    arr = zarrcrop.open(path)
    starts = np.array(
        [[0, 0, -10, -10], [2, 0, 60, 80], [1, 0, -40, 70], [0, 0, 100, 100], [-1, 0, 0, 0]]
    )
    got = arr.read_crops(starts, (1, 3, 30, 30), boundary="fill", fill=fill)
    expected = _expected(data, starts, (1, 3, 30, 30), 9 if fill is None else fill)
    np.testing.assert_array_equal(got, expected)


def test_float_nan_fill(tmp_path):
    path, data = _video(tmp_path, fill_value=np.nan, dtype="float32")
    arr = zarrcrop.open(path)
    starts = np.array([[1, 0, 20, -5], [0, 0, 50, 70]])
    got = arr.read_crops(starts, (1, 3, 30, 30), boundary="fill")
    expected = _expected(data, starts, (1, 3, 30, 30), np.nan)
    np.testing.assert_array_equal(got, expected)  # NaN positions must agree


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
    np.testing.assert_array_equal(got, _expected(data, starts, (1, 12, 12), -1))
    with pytest.raises(IndexError, match="crop 0"):
        arr.read_crops(starts, (1, 12, 12))
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(path, strict=True)


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
    np.testing.assert_array_equal(got, _expected(full, starts, shape, 5))
    inside = [
        i
        for i, s in enumerate(starts)
        if all(0 <= a and a + c <= m for a, c, m in zip(s, shape, full.shape, strict=True))
    ]
    got_inside = arr.read_crops(starts[inside], shape)
    np.testing.assert_array_equal(got_inside, _expected(full, starts[inside], shape, 5))


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
