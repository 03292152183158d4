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


# --- outputs larger than the last-level cache: written with non-temporal stores -----------------


def test_stream_copy_kernel_every_alignment():
    """The non-temporal copy writes exactly [offset, offset + n): every head alignment, lengths
    around whole 64-byte lines, nothing before or after touched."""
    rng = np.random.default_rng(5)
    src = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    for offset in range(64):
        for n in (0, 1, 63, 64, 65, 127, 128, 129, 191, 192, 255, 256, 257, 400):
            got = zarrcrop._core._testing.stream_copy(src[:n], offset, 64)
            assert got[:offset] == b"\xaa" * offset, (offset, n)
            assert got[offset : offset + n] == src[:n], (offset, n)
            assert got[offset + n :] == b"\xaa" * 64, (offset, n)


@pytest.fixture(scope="module")
def big_array(tmp_path_factory):
    """An array a little larger than _stream_threshold() (the largest CPU cache), chunks of
    96 KiB in two Blosc blocks of 48 KiB."""
    threshold = zarrcrop._core._testing.stream_threshold()
    frames = threshold // (3 * 128 * 256) + 2
    if frames * 3 * 128 * 256 > 512 * 2**20:
        pytest.skip(f"the cache is {threshold} bytes: an array larger needs too much memory")
    path = str(tmp_path_factory.mktemp("big") / "big.zarr")
    rng = np.random.default_rng(2)
    data = rng.integers(0, 16, (frames, 3, 128, 256), dtype=np.uint8)
    compressor = numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE, blocksize=48 * 1024)
    z = zarr.create_array(
        path,
        shape=data.shape,
        chunks=(1, 3, 128, 256),
        dtype="uint8",
        compressors=compressor,
        zarr_format=2,
    )
    z[...] = data
    return path, data


@pytest.mark.parametrize("boundary", ["error", "fill"])
def test_read_crops_larger_than_the_cache_equal_per_crop_reads(big_array, boundary):
    """A batch whose output exceeds the threshold is written with non-temporal stores; rows of
    157 bytes cut by Blosc blocks, crops across chunks and frames, duplicates."""
    path, data = big_array
    shape = (2, 3, 37, 157)
    n = zarrcrop._core._testing.stream_threshold() // int(np.prod(shape)) + 64
    arr = zarrcrop.open(path)
    rng = np.random.default_rng(11)
    lo = -9 if boundary == "fill" else 0
    frames, _, height, width = data.shape
    base = np.stack(
        [
            rng.integers(lo, frames - 2 + 1 - lo, 256),
            np.zeros(256, np.int64),
            rng.integers(lo, height - 37 + 1 - lo, 256),
            rng.integers(lo, width - 157 + 1 - lo, 256),
        ],
        axis=1,
    )
    starts = base[rng.integers(0, 256, n)]  # many duplicates, as in an epoch over few frames
    got = arr.read_crops(starts, shape, boundary=boundary)
    expected = _expected(data, base, shape, 0)
    index = {tuple(s): i for i, s in enumerate(base.tolist())}
    for i, s in enumerate(starts.tolist()):
        np.testing.assert_array_equal(got[i], expected[index[tuple(s)]])


def test_read_larger_than_the_cache_equals_zarr_python(big_array):
    """A single selection whose output exceeds the threshold is streamed too."""
    path, data = big_array
    arr = zarrcrop.open(path)
    np.testing.assert_array_equal(arr[...], data)
    np.testing.assert_array_equal(arr[:, :, 1:127, 3:], data[:, :, 1:127, 3:])
    ref = zarr.open_array(path, mode="r")
    np.testing.assert_array_equal(arr[:, 1:, 5:100, 7:250], ref[:, 1:, 5:100, 7:250])
