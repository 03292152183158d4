"""Output buffers: CropArray.read(selection, out=...) writing into caller-provided buffers
(NumPy, memoryview, torch), the arrays zarrcrop allocates (cache-line aligned), and outputs
larger than the CPU cache (written with non-temporal stores), for read() and read_crops().

read_crops' own out= checks: tests/test_read_crops.py."""

from __future__ import annotations

from dataclasses import replace

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import (
    DTYPES,
    ArraySpec,
    Blosc,
    assert_same,
    create_array,
    dtype_in_message,
    expected_crops,
    make_data,
    shape_in_message,
)

# numcodecs' Delta filter (the fallback layout) warns on inf - inf while encoding random floats
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

SPEC = ArraySpec(
    zarr_format=2,
    shape=(9, 14, 3),
    chunks=(4, 5, 2),
    dtype="float32",
    codec=Blosc("zstd", 5, "bitshuffle"),
    fill_value=float("nan"),
    key_encoding={"name": "v2", "separator": "/"},
)
SEL = (slice(1, 8), slice(-12, None, 2), 1)  # result shape (7, 6)
SEL_SHAPE = (7, 6)


@pytest.fixture
def arrays(tmp_path):
    """(zarrcrop array, zarr-python array) for SPEC, with a missing chunk inside SEL."""
    za = create_array(
        tmp_path / "a.zarr", SPEC, make_data(SPEC.shape, SPEC.dtype, seed=4), missing=[(1, 1, 0)]
    )
    return zarrcrop.open(tmp_path / "a.zarr"), za


@pytest.fixture
def fallback_arrays(tmp_path):
    """Same data in a non-native layout (a delta filter)."""
    spec = replace(SPEC, layout="v2-delta-filter")
    za = create_array(tmp_path / "f.zarr", spec, make_data(SPEC.shape, SPEC.dtype, seed=4))
    ca = zarrcrop.open(tmp_path / "f.zarr")
    assert not ca.native
    return ca, za


def garbage(shape, dtype) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    out.reshape(-1).view(np.uint8)[:] = 0xAB
    return out


@pytest.mark.native
def test_numpy_out_is_returned_and_filled(arrays):
    ca, za = arrays
    out = garbage(SEL_SHAPE, np.float32)
    result = ca.read(SEL, out=out)
    assert result is out
    assert_same(out, za[SEL])


@pytest.mark.native
def test_numpy_out_whole_array(arrays):
    ca, za = arrays
    out = garbage(SPEC.shape, np.float32)
    assert ca.read(out=out) is out
    assert_same(out, za[...])


@pytest.mark.native
def test_numpy_out_zero_dimensional(arrays):
    ca, za = arrays
    out = garbage((), np.float32)
    assert ca.read((2, 3, 1), out=out) is out
    assert_same(out, np.asarray(za[2, 3, 1]))


@pytest.mark.native
def test_numpy_out_negative_steps(arrays):
    ca, za = arrays
    sel = (slice(None, None, -2), slice(10, 2, -3), slice(None, None, -1))
    expected = np.asarray(za[...])[sel]
    out = garbage(expected.shape, np.float32)
    assert ca.read(sel, out=out) is out
    assert_same(out, expected)


@pytest.mark.native
def test_numpy_out_reused_for_several_reads(arrays):
    ca, za = arrays
    out = garbage((4, 5, 3), np.float32)
    for top, left in [(0, 0), (5, 9), (3, 4), (4, 5)]:
        sel = (slice(top, top + 4), slice(left, left + 5))
        assert ca.read(sel, out=out) is out
        assert_same(out, za[sel])


@pytest.mark.native
def test_numpy_out_empty_result(arrays):
    ca, za = arrays
    sel = (slice(5, 2), slice(None), 0)
    out = np.empty((0, 14), dtype=np.float32)
    assert ca.read(sel, out=out) is out
    assert_same(out, za[sel])


@pytest.mark.native
def test_memoryview_out(arrays):
    ca, za = arrays
    backing = garbage(SEL_SHAPE, np.float32)
    view = memoryview(backing)
    result = ca.read(SEL, out=view)
    assert result is view
    assert_same(backing, za[SEL])


@pytest.mark.native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["numpy", "memoryview"])
def test_out_every_dtype(tmp_path, dtype, kind):
    spec = ArraySpec(3, (5, 6), (2, 4), dtype, Blosc("lz4", 1, "bitshuffle"), 0)
    spec = replace(spec, key_encoding={"name": "default", "separator": "/"})
    za = create_array(tmp_path / "d.zarr", spec, make_data(spec.shape, dtype, seed=3))
    ca = zarrcrop.open(tmp_path / "d.zarr")
    assert ca.native, ca.fallback_reason
    sel = (slice(1, 5), slice(-5, None, 2))
    backing = garbage((4, 3), ca.dtype)
    out = backing if kind == "numpy" else memoryview(backing)
    assert ca.read(sel, out=out) is out
    assert_same(backing, za[sel])


def test_out_with_fallback_array(fallback_arrays):
    ca, za = fallback_arrays
    out = garbage(SEL_SHAPE, np.float32)
    assert ca.read(SEL, out=out) is out
    assert_same(out, za[SEL])
    view_backing = garbage(SEL_SHAPE, np.float32)
    view = memoryview(view_backing)
    assert ca.read(SEL, out=view) is view
    assert_same(view_backing, za[SEL])


@pytest.mark.native
def test_out_big_endian(tmp_path):
    spec = replace(SPEC, layout="v2-big-endian")
    za = create_array(tmp_path / "be.zarr", spec, make_data(SPEC.shape, SPEC.dtype, seed=4))
    ca = zarrcrop.open(tmp_path / "be.zarr")
    assert ca.native
    assert ca.dtype == np.dtype(">f4")
    out = garbage(SEL_SHAPE, ">f4")
    assert ca.read(SEL, out=out) is out
    assert_same(out, za[SEL])
    with pytest.raises(ValueError):
        ca.read(SEL, out=np.empty(SEL_SHAPE, dtype="<f4"))


def test_out_with_fancy_selection(arrays):
    ca, za = arrays
    sel = ([0, 4, 8], slice(2, 9))
    expected = np.asarray(za[sel])
    out = garbage(expected.shape, np.float32)
    assert ca.read(sel, out=out) is out
    assert_same(out, expected)


# --------------------------------------------------------------------------------------
# Invalid out buffers
# --------------------------------------------------------------------------------------


def _ro(shape, dtype):
    out = np.empty(shape, dtype=dtype)
    out.setflags(write=False)
    return out


@pytest.mark.parametrize("kind", ["native", "fallback"])
@pytest.mark.parametrize(
    "bad_shape",
    [(6, 7), (7, 6, 1), (42,), (7, 5)],
    ids=["transposed", "extra-dim", "flat", "short"],
)
def test_wrong_shape_raises(arrays, fallback_arrays, kind, bad_shape):
    ca, _ = arrays if kind == "native" else fallback_arrays
    with pytest.raises(ValueError) as info:
        ca.read(SEL, out=np.empty(bad_shape, dtype=np.float32))
    message = str(info.value)
    assert "shape" in message.lower()
    assert shape_in_message(message, SEL_SHAPE), message


@pytest.mark.parametrize("kind", ["native", "fallback"])
@pytest.mark.parametrize("bad_dtype", ["float64", "int32", "float16", ">f4"])
def test_wrong_dtype_raises(arrays, fallback_arrays, kind, bad_dtype):
    ca, _ = arrays if kind == "native" else fallback_arrays
    with pytest.raises(ValueError) as info:
        ca.read(SEL, out=np.empty(SEL_SHAPE, dtype=bad_dtype))
    message = str(info.value)
    assert "dtype" in message.lower() or "type" in message.lower()
    assert dtype_in_message(message, np.float32), message


NON_CONTIGUOUS = {
    "strided-columns": lambda: np.empty((7, 12), dtype=np.float32)[:, ::2],
    "strided-rows": lambda: np.empty((14, 6), dtype=np.float32)[::2],
    "fortran-order": lambda: np.empty(SEL_SHAPE, dtype=np.float32, order="F"),
    "transposed": lambda: np.empty((6, 7), dtype=np.float32).T,
    "strided-memoryview": lambda: memoryview(np.empty((7, 12), dtype=np.float32)[:, ::2]),
}


@pytest.mark.parametrize("kind", ["native", "fallback"])
@pytest.mark.parametrize("make_out", NON_CONTIGUOUS.values(), ids=NON_CONTIGUOUS.keys())
def test_non_contiguous_out_raises(arrays, fallback_arrays, kind, make_out):
    ca, _ = arrays if kind == "native" else fallback_arrays
    out = make_out()
    assert out.shape == SEL_SHAPE and not np.asarray(out).flags.c_contiguous
    with pytest.raises(ValueError) as info:
        ca.read(SEL, out=out)
    assert "contiguous" in str(info.value).lower()


@pytest.mark.native
def test_non_contiguous_example_from_docs(arrays):
    ca, _ = arrays
    out = np.empty((4, 4), dtype=np.float32)[:, ::2]
    with pytest.raises(ValueError, match=r"(?i)contiguous"):
        ca.read((slice(0, 4), slice(0, 2), 0), out=out)


READ_ONLY = {
    "numpy": lambda: _ro(SEL_SHAPE, np.float32),
    "memoryview": lambda: memoryview(_ro(SEL_SHAPE, np.float32)),
    "bytes-memoryview": lambda: memoryview(bytes(7 * 6 * 4)).cast("f", SEL_SHAPE),
}


@pytest.mark.parametrize("kind", ["native", "fallback"])
@pytest.mark.parametrize("make_out", READ_ONLY.values(), ids=READ_ONLY.keys())
def test_read_only_out_raises(arrays, fallback_arrays, kind, make_out):
    ca, _ = arrays if kind == "native" else fallback_arrays
    with pytest.raises(ValueError) as info:
        ca.read(SEL, out=make_out())
    message = str(info.value).lower()
    assert any(word in message for word in ("writ", "read-only", "readonly", "read only")), message


@pytest.mark.native
def test_invalid_out_leaves_no_partial_result(arrays):
    ca, _ = arrays
    out = np.zeros((6, 7), dtype=np.float32)
    with pytest.raises(ValueError):
        ca.read(SEL, out=out)
    assert not out.any()


# --------------------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------------------


@pytest.mark.native
def test_torch_out(arrays):
    torch = pytest.importorskip("torch")
    ca, za = arrays
    out = torch.full(SEL_SHAPE, -1.0, dtype=torch.float32)
    result = ca.read(SEL, out=out)
    assert result is out
    assert_same(out.numpy(), za[SEL])


@pytest.mark.native
def test_torch_out_integer_dtype(tmp_path):
    torch = pytest.importorskip("torch")
    spec = ArraySpec(2, (3, 40, 50), (3, 16, 16), "uint8", Blosc("lz4", 5, "shuffle"), 0)
    za = create_array(tmp_path / "u8.zarr", spec, make_data(spec.shape, "uint8", seed=9))
    ca = zarrcrop.open(tmp_path / "u8.zarr")
    out = torch.empty((3, 32, 32), dtype=torch.uint8)
    assert ca.read((slice(None), slice(5, 37), slice(11, 43)), out=out) is out
    assert_same(out.numpy(), za[:, 5:37, 11:43])


def test_torch_out_fallback(fallback_arrays):
    torch = pytest.importorskip("torch")
    ca, za = fallback_arrays
    out = torch.empty(SEL_SHAPE, dtype=torch.float32)
    assert ca.read(SEL, out=out) is out
    assert_same(out.numpy(), za[SEL])


@pytest.mark.native
def test_torch_non_contiguous_out_raises(arrays):
    torch = pytest.importorskip("torch")
    ca, _ = arrays
    out = torch.empty((7, 12), dtype=torch.float32)[:, ::2]
    assert tuple(out.shape) == SEL_SHAPE and not out.is_contiguous()
    with pytest.raises(ValueError, match=r"(?i)contiguous"):
        ca.read(SEL, out=out)


@pytest.mark.native
def test_torch_wrong_dtype_raises(arrays):
    torch = pytest.importorskip("torch")
    ca, _ = arrays
    with pytest.raises(ValueError):
        ca.read(SEL, out=torch.empty(SEL_SHAPE, dtype=torch.float64))
    with pytest.raises(ValueError):
        ca.read(SEL, out=torch.empty((6, 7), dtype=torch.float32))


@pytest.mark.parametrize("dtype", ["uint8", "float16", "complex128", "U3", "O"])
@pytest.mark.parametrize("shape", [(), (0, 5), (7, 3), (1025, 1024), (3, 700, 999)])
def test_arrays_zarrcrop_allocates(dtype, shape):
    """aligned_empty: np.empty's shape and dtype; data on a cache-line boundary from 1 MiB
    (not for Python objects), writable and C-contiguous, so usable as out= afterwards."""
    from zarrcrop._output import ALIGN_FROM, LINE, aligned_empty

    a = aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == np.dtype(dtype)
    assert a.flags.c_contiguous and a.flags.writeable
    if a.nbytes >= ALIGN_FROM and dtype != "O":
        assert a.ctypes.data % LINE == 0
    a[...] = np.ones(shape, dtype=a.dtype)
    assert np.array_equal(a, np.ones(shape, dtype=a.dtype))


@pytest.mark.native
def test_big_results_are_line_aligned(tmp_path):
    """read() and read_crops() results of 1 MiB or more start on a cache line (the outputs
    written with whole-line non-temporal stores); equal to zarr-python's either way."""
    spec = replace(SPEC, shape=(4, 600, 600), chunks=(1, 256, 256), dtype="uint8", fill_value=0)
    za = create_array(
        tmp_path / "big", spec, make_data(spec.shape, spec.dtype, seed=2, mode="runs")
    )
    ca = zarrcrop.open(tmp_path / "big")
    assert ca.native, ca.fallback_reason
    whole = ca[...]
    assert whole.ctypes.data % 64 == 0
    assert_same(whole, za[...])
    starts = np.array([[0, 0, 0], [1, 10, 0], [3, 5, 0]])
    crops = ca.read_crops(starts, (1, 590, 600))
    assert crops.ctypes.data % 64 == 0
    for crop, (t, y, x) in zip(crops, starts.tolist(), strict=True):
        assert_same(crop, za[t : t + 1, y : y + 590, x : x + 600])
    assert ca.read_crops(starts, (1, 590, 600), out=crops) is crops


# --- outputs larger than the last-level cache: written with non-temporal stores -----------------


@pytest.mark.native
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


@pytest.mark.native
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
    expected = expected_crops(data, base, shape, 0)
    index = {tuple(s): i for i, s in enumerate(base.tolist())}
    for i, s in enumerate(starts.tolist()):
        np.testing.assert_array_equal(got[i], expected[index[tuple(s)]])


@pytest.mark.native
def test_read_larger_than_the_cache_equals_zarr_python(big_array):
    """A single selection whose output exceeds the threshold is streamed too."""
    path, data = big_array
    arr = zarrcrop.open(path)
    np.testing.assert_array_equal(arr[...], data)
    np.testing.assert_array_equal(arr[:, :, 1:127, 3:], data[:, :, 1:127, 3:])
    ref = zarr.open_array(path, mode="r")
    np.testing.assert_array_equal(arr[:, 1:, 5:100, 7:250], ref[:, 1:, 5:100, 7:250])


# -- the output pool: large outputs reused once nothing references them ------------------

POOL_SPEC = ArraySpec(
    zarr_format=2,
    shape=(3, 3, 1200, 1100),
    chunks=(1, 3, 512, 512),
    dtype="uint8",
    codec=Blosc("lz4", 5, "shuffle"),
    fill_value=7,
)
POOL_CROP = (1, 3, 1024, 1024)  # 3 MiB a crop: a batch of 3 is above the pool's 8 MiB


@pytest.fixture
def pool_array(tmp_path):
    """(zarrcrop array, its data) for POOL_SPEC, one chunk missing; the pool starts empty at
    its default limit and is emptied again after the test."""
    from zarrcrop import _output_pool

    data = make_data(POOL_SPEC.shape, POOL_SPEC.dtype, seed=9, mode="runs")
    create_array(tmp_path / "p.zarr", POOL_SPEC, data, missing=[(1, 0, 1, 1)])
    data[1, :, 512:1024, 512:1024] = 7
    _output_pool._POOL.bufs = []
    zarrcrop.set_output_pool_limit(zarrcrop.DEFAULT_OUTPUT_POOL_LIMIT)
    yield zarrcrop.open(tmp_path / "p.zarr", strict=True), data
    zarrcrop.set_output_pool_limit(zarrcrop.DEFAULT_OUTPUT_POOL_LIMIT)
    _output_pool._POOL.bufs = []


def _batch(k: int) -> np.ndarray:
    """Three crop starts, different for each k, all inside POOL_SPEC's shape."""
    rows = [[t, 0, (11 * k + 37 * t) % 177, (13 * k + 29 * t) % 77] for t in range(3)]
    return np.array(rows, dtype=np.int64)


@pytest.mark.native
def test_output_pool_reuses_a_dropped_output(pool_array):
    """A batch output the caller dropped is the next one's memory; both results are right."""
    ca, data = pool_array
    before = zarrcrop.output_pool_info()
    a = ca.read_crops(_batch(0), POOL_CROP)
    assert_same(a, expected_crops(data, _batch(0), POOL_CROP, 7))
    address = a.ctypes.data
    del a
    b = ca.read_crops(_batch(1), POOL_CROP)
    assert b.ctypes.data == address
    assert_same(b, expected_crops(data, _batch(1), POOL_CROP, 7))
    info = zarrcrop.output_pool_info()
    assert info["reused"] == before["reused"] + 1
    assert info["allocated"] == before["allocated"] + 1
    assert info["buffers"] == 1 and info["free"] == 0 and info["held"] >= b.nbytes
    del b
    assert zarrcrop.output_pool_info()["free"] == 1


def _hold_array(a):
    return a


def _hold_view(a):
    return a[1:, :, :, 5:]


def _hold_memoryview(a):
    return memoryview(a)


def _hold_torch(a):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(a)


def _hold_reshaped(a):
    return a.reshape(-1)[::3]


@pytest.mark.native
@pytest.mark.parametrize(
    "hold", [_hold_array, _hold_view, _hold_memoryview, _hold_torch, _hold_reshaped]
)
def test_output_pool_never_reuses_an_output_still_referenced(pool_array, hold):
    """Whatever still references an output (the array, a view of it, a memoryview, a torch
    tensor sharing it) keeps its memory out of the pool: later reads do not overwrite it."""
    ca, data = pool_array
    a = ca.read_crops(_batch(0), POOL_CROP)
    kept = a.copy()
    holder = hold(a)
    address = a.ctypes.data
    del a
    for k in range(1, 4):
        b = ca.read_crops(_batch(k), POOL_CROP)
        assert b.ctypes.data != address
        assert_same(b, expected_crops(data, _batch(k), POOL_CROP, 7))
    assert_same(np.asarray(hold(kept)), np.asarray(holder))
    del holder, b
    c = ca.read_crops(_batch(5), POOL_CROP)  # now free: reused
    assert zarrcrop.output_pool_info()["reused"] >= 1
    assert_same(c, expected_crops(data, _batch(5), POOL_CROP, 7))


@pytest.mark.native
def test_output_pool_limit(pool_array):
    """The limit bounds the bytes kept; 0 turns the pool off; bad limits are rejected."""
    ca, data = pool_array
    nbytes = ca.read_crops(_batch(0), POOL_CROP).nbytes
    assert zarrcrop.get_output_pool_limit() == zarrcrop.DEFAULT_OUTPUT_POOL_LIMIT
    zarrcrop.set_output_pool_limit(2 * nbytes + 256)  # room for two buffers, not three
    held = [ca.read_crops(_batch(k), POOL_CROP) for k in range(3)]
    info = zarrcrop.output_pool_info()
    assert info["buffers"] == 2 and info["held"] <= 2 * nbytes + 256
    for k, a in enumerate(held):
        assert_same(a, expected_crops(data, _batch(k), POOL_CROP, 7))
    del held, a
    zarrcrop.set_output_pool_limit(0)
    assert zarrcrop.output_pool_info()["buffers"] == 0
    reused = zarrcrop.output_pool_info()["reused"]
    for k in range(3):
        want = expected_crops(data, _batch(k), POOL_CROP, 7)
        assert_same(ca.read_crops(_batch(k), POOL_CROP), want)
    assert zarrcrop.output_pool_info()["reused"] == reused
    assert zarrcrop.get_output_pool_limit() == 0
    with pytest.raises(ValueError, match="output pool limit"):
        zarrcrop.set_output_pool_limit(-1)


@pytest.mark.native
def test_output_pool_small_outputs_are_not_pooled(pool_array):
    """Outputs under 8 MiB (a single crop) are plain arrays: the pool keeps nothing."""
    ca, data = pool_array
    for k in range(3):
        one = ca.read_crops(_batch(k)[:1], POOL_CROP)
        assert_same(one, expected_crops(data, _batch(k)[:1], POOL_CROP, 7))
    assert zarrcrop.output_pool_info()["buffers"] == 0


@pytest.mark.native
def test_output_pool_many_threads(pool_array):
    """Threads reading at once, each holding some results for a while: no result is ever
    overwritten by another read (each checked after the others have run)."""
    import threading

    ca, data = pool_array
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            held = []
            for i in range(6):
                k = 4 * w + i
                a = ca.read_crops(_batch(k % 20), POOL_CROP)
                held.append((k % 20, a))
                if i % 3 == 2:  # drop some, keep others across later reads
                    held = held[-1:]
            for k, a in held:
                assert_same(a, expected_crops(data, _batch(k), POOL_CROP, 7))
        except BaseException as exc:  # reported on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[0]
    info = zarrcrop.output_pool_info()
    assert info["reused"] > 0 and info["held"] <= zarrcrop.DEFAULT_OUTPUT_POOL_LIMIT


@pytest.mark.native
def test_output_pool_after_fork_with_its_lock_held(tmp_path):
    """A child forked while another thread held the pool's lock reads (its lock is new)."""
    from helpers import run_python

    spec = replace(POOL_SPEC, fill_value=0)
    create_array(tmp_path / "p.zarr", spec, make_data(spec.shape, spec.dtype, seed=2, mode="runs"))
    code = f"""
import os, sys, threading
import numpy as np, zarr, zarrcrop
from zarrcrop import _output_pool
ca = zarrcrop.open(os.path.join(sys.argv[1], "p.zarr"), strict=True)
za = zarr.open_array(os.path.join(sys.argv[1], "p.zarr"), mode="r")
starts = np.array([[t, 0, 3 * t, 5 * t] for t in range(3)], dtype=np.int64)
ca.read_crops(starts, {POOL_CROP!r})  # dropped: a free buffer in the pool
held, release = threading.Event(), threading.Event()
def hold():
    with _output_pool._POOL.lock:
        held.set()
        release.wait(60)
t = threading.Thread(target=hold)
t.start()
held.wait(60)
pid = os.fork()
if pid == 0:
    got = ca.read_crops(starts, {POOL_CROP!r})
    want = np.stack([za[t:t + 1, :, 3 * t:3 * t + 1024, 5 * t:5 * t + 1024] for t in range(3)])
    os._exit(0 if np.array_equal(got, want) and _output_pool._POOL.reused == 1 else 3)
release.set()
t.join()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""
    proc = run_python(code, tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "child 0" in proc.stdout


@pytest.mark.native
def test_poisoned_pool_outputs_are_written_whole(pool_array, poisoned_output_pool):
    """Every output from the pool, filled with 0xA5 first: read_crops (inside, missing chunk,
    boundary="fill") and basic selections write every byte."""
    ca, data = pool_array
    starts = np.array([[1, 0, 100, 40], [2, 0, 700, 600], [0, 0, -50, 900]], dtype=np.int64)
    for _ in range(3):  # the second and third reads get the first's buffers back
        got = ca.read_crops(starts, POOL_CROP, boundary="fill", fill=3)
        assert_same(got, expected_crops(data, starts, POOL_CROP, 3))
        del got
        sel = (slice(0, 3), slice(None), slice(100, 1200, 3), slice(None, None, -2))
        assert_same(ca[sel], data[sel])
    assert zarrcrop.output_pool_info()["reused"] >= 4


@pytest.mark.native
def test_output_pool_output_larger_than_the_limit(pool_array):
    """An output larger than the limit is a plain array; the free buffers kept stay."""
    ca, data = pool_array
    small = ca.read_crops(_batch(0), POOL_CROP)
    zarrcrop.set_output_pool_limit(small.nbytes + 256)
    del small
    assert zarrcrop.output_pool_info()["free"] == 1
    starts = np.concatenate([_batch(1), _batch(2)])
    big = ca.read_crops(starts, POOL_CROP)
    assert_same(big, expected_crops(data, starts, POOL_CROP, 7))
    info = zarrcrop.output_pool_info()
    assert info["buffers"] == 1 and info["free"] == 1
    again = ca.read_crops(_batch(3), POOL_CROP)  # the kept one, reused
    assert zarrcrop.output_pool_info()["free"] == 0
    assert_same(again, expected_crops(data, _batch(3), POOL_CROP, 7))
