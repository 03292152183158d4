"""Fuzzing of selections and read_crops arguments, valid and invalid alike.

``__getitem__`` / ``read``: arbitrary selections (integers of every kind and size, slices with
any bounds and steps, Ellipsis, None, booleans, floats, strings, lists and arrays) are compared
with zarr-python: when it returns data zarrcrop returns the identical array (dtype, shape and
bytes, NaN included); when it raises zarrcrop raises too.

Deliberate difference: zarr-python rejects negative slice steps; zarrcrop gives NumPy's answer
for them (see the README). Selections with a negative step are compared with NumPy on the whole
array instead; when they also hold something beyond basic indexing (then read by zarr-python)
an exception is accepted.

``read_crops``: arbitrary starts, crop shapes, boundary modes, fill values and ``out=`` buffers.
A small model says whether the arguments are valid; valid ones must give exactly a NumPy
reference built from the whole array (fill outside it), invalid ones a clean Python exception.
Native and fallback arrays are both checked.
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import assert_same
from hypothesis import event, given, settings
from hypothesis import strategies as st

# What a rejected argument may raise (OverflowError: Python ints past int64 / uint64).
CLEAN = (IndexError, ValueError, TypeError, OverflowError)

HUGE = [2**31, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**65]
HUGE_INTS = HUGE + [-n for n in HUGE] + [-(2**63) - 1]
NP_INT_TYPES = [
    np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.intp,
]  # fmt: skip


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> dict[str, tuple[zarrcrop.CropArray, zarr.Array, np.ndarray]]:
    """name -> (zarrcrop array, zarr-python array, full contents). Float data with NaNs and
    missing chunks (NaN fill), in native and fallback variants, plus 1-d and 0-d arrays."""
    base: Path = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(7)
    data3 = rng.normal(size=(6, 7, 5))
    data3[rng.random(data3.shape) < 0.1] = np.nan
    data3[0, 0, 0] = -0.0
    blosc = numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)
    out: dict[str, tuple[zarrcrop.CropArray, zarr.Array, np.ndarray]] = {}
    variants: dict[str, dict[str, Any]] = {
        "native-3d": {"compressors": blosc},
        "fallback-3d": {"compressors": blosc, "filters": [numcodecs.Delta(dtype="<f8")]},
    }
    for name, kwargs in variants.items():
        za = zarr.create_array(
            store=str(base / f"{name}.zarr"), shape=data3.shape, chunks=(4, 3, 2), dtype="<f8",
            zarr_format=2, fill_value=np.nan, **kwargs,
        )  # fmt: skip
        za[...] = data3
        (base / f"{name}.zarr" / "1.1.1").unlink()  # a missing chunk: NaN fill
        ca = zarrcrop.open(base / f"{name}.zarr")
        assert ca.native == name.startswith("native"), ca.fallback_reason
        out[name] = (ca, za, np.asarray(za[...]))
    za = zarr.create_array(
        store=str(base / "1d.zarr"), shape=(11,), chunks=(4,), dtype="int16", zarr_format=3,
        fill_value=-3,
    )  # fmt: skip
    za[:9] = np.arange(9, dtype=np.int16) * 7 - 20
    out["native-1d"] = (zarrcrop.open(base / "1d.zarr"), za, np.asarray(za[...]))
    za = zarr.create_array(
        store=str(base / "0d.zarr"), shape=(), chunks=(), dtype="float32", zarr_format=2,
        fill_value=0, compressors=blosc,
    )  # fmt: skip
    za[...] = 2.5
    out["native-0d"] = (zarrcrop.open(base / "0d.zarr"), za, np.asarray(za[...]))
    return out


ARRAY_NAMES = ["native-3d", "fallback-3d", "native-1d", "native-0d"]

# ------------------------------------------------------------------------------ selections


@st.composite
def numpy_ints(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(NP_INT_TYPES))
    info = np.iinfo(kind)
    value = draw(st.integers(max(info.min, -12), 12) | st.sampled_from([info.min, info.max]))
    return kind(value)


small_numpy_ints = st.builds(
    lambda kind, value: kind(value), st.sampled_from(NP_INT_TYPES), st.integers(0, 12)
)
ints = st.integers(-12, 12) | st.sampled_from(HUGE_INTS) | numpy_ints()
bounds = st.none() | ints
slices = st.builds(slice, bounds, bounds, bounds)
others = st.sampled_from(
    [Ellipsis, None, True, False, np.True_, 1.0, 1.5, float("nan"), "a", "1", b"0", [], object()]
)
index_lists = st.lists(st.integers(-8, 8), min_size=0, max_size=3)
index_arrays = st.builds(lambda v, kind: np.array(v).astype(kind), index_lists, st.sampled_from(
    [np.int64, np.int8, np.uint8, np.float64, bool]
))  # fmt: skip
items = st.one_of(slices, slices, ints, others, index_lists, index_arrays)
selections = st.one_of(
    items,
    st.lists(items, min_size=0, max_size=5).map(tuple),
    st.lists(st.one_of(slices, ints, st.just(Ellipsis)), min_size=0, max_size=4).map(tuple),
    st.lists(items, min_size=1, max_size=3),  # a list, not a tuple: fancy indexing
)


def _attempt(fn: Any) -> tuple[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "ok", fn()
    except Exception as exc:
        return "error", exc


def _negative_step(sel: Any) -> bool:
    for item in sel if isinstance(sel, tuple) else (sel,):
        if isinstance(item, slice) and item.step is not None:
            try:
                if operator.index(item.step) < 0:
                    return True
            except TypeError:
                pass
    return False


def _basic(sel: Any) -> bool:
    def ok(item: Any) -> bool:
        if item is Ellipsis or isinstance(item, slice):
            return True
        return isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))

    return all(ok(item) for item in (sel if isinstance(sel, tuple) else (sel,)))


def _check_error(exc: BaseException, sel: Any, expected: Any) -> None:
    assert isinstance(exc, CLEAN), f"{sel!r}: {type(exc).__name__}: {exc} (expected {expected})"


@pytest.mark.parametrize("name", ARRAY_NAMES)
@settings(max_examples=3 * settings().max_examples)
@given(sel=selections)
def test_selection_matches_zarr(arrays, name, sel):
    ca, za, full = arrays[name]
    given_sel = copy.deepcopy(sel)
    try:
        _check_selection(ca, za, full, sel)
    finally:
        # zarr-python changes index arrays in place (negative entries wrapped); zarrcrop not.
        for item, before in zip(_items(sel), _items(given_sel), strict=True):
            if isinstance(item, np.ndarray):
                np.testing.assert_array_equal(item, before, err_msg="index array changed")


def _items(sel: Any) -> tuple[Any, ...]:
    return sel if isinstance(sel, tuple) else (sel,)


def _check_selection(ca: zarrcrop.CropArray, za: zarr.Array, full: np.ndarray, sel: Any) -> None:
    if _negative_step(sel):
        kind, expected = _attempt(lambda: np.asarray(full[sel]))
        if not _basic(sel) and kind == "ok":
            # Not basic: zarrcrop hands it to zarr-python, which rejects negative steps.
            got_kind, got = _attempt(lambda: ca[sel])
            if got_kind == "error":
                _check_error(got, sel, "NumPy's answer or an exception")
                return
    else:
        kind, expected = _attempt(lambda: za[copy.deepcopy(sel)])
    got_kind, got = _attempt(lambda: ca[sel])
    event(f"reference {kind}, zarrcrop {got_kind}")
    if kind == "error" and got_kind == "error":
        event(f"raised {type(expected).__name__} / {type(got).__name__}")
    if kind == "error":
        assert got_kind == "error", f"{sel!r}: reference raised {expected!r}, zarrcrop returned"
        _check_error(got, sel, expected)
        return
    assert got_kind == "ok", f"{sel!r}: zarrcrop raised {got!r}, reference returned"
    assert_same(got, expected)
    assert type(got) is type(expected) or np.ndim(expected) == 0, (type(got), type(expected))
    # The same through read(out=).
    buf = np.full(np.shape(expected), 99, dtype=ca.dtype)
    out_kind, out_got = _attempt(lambda: ca.read(sel, out=buf))
    assert out_kind == "ok", f"{sel!r}: read(out=) raised {out_got!r}"
    assert out_got is buf
    assert_same(buf, np.asarray(expected))
    # Unusable out= buffers are rejected and left untouched.
    for bad in _bad_outs(np.shape(expected), ca.dtype):
        before = np.array(bad, copy=True)
        bad_kind, bad_got = _attempt(lambda bad=bad: ca.read(sel, out=bad))
        assert bad_kind == "error" and isinstance(bad_got, ValueError), (sel, bad_got)
        np.testing.assert_array_equal(np.asarray(bad), before)


def _bad_outs(shape: tuple[int, ...], dtype: np.dtype) -> list[Any]:
    other = np.float32 if dtype != np.float32 else np.float64
    bad: list[Any] = [np.zeros(shape, dtype=other), np.zeros((*shape, 2), dtype=dtype)]
    if shape and shape[-1] > 1 and math.prod(shape) > 0:  # (empty arrays are contiguous)
        bad.append(np.zeros((*shape[:-1], 2 * shape[-1]), dtype=dtype)[..., ::2])
    readonly = np.zeros(shape, dtype=dtype)
    readonly.flags.writeable = False
    return [*bad, readonly]


# ------------------------------------------------------------------------------ read_crops


class Invalid(Exception):
    """The model says the arguments must be rejected."""


def _model_starts(starts: Any, ndim: int) -> np.ndarray:
    try:
        raw = np.asarray(starts)
    except Exception as exc:
        raise Invalid(exc) from exc
    if raw.shape == (0,):  # an empty list: no crops
        raw = np.zeros((0, ndim), dtype=np.int64)
    if raw.dtype.kind not in "iu":
        raise Invalid("dtype")
    if raw.ndim != 2 or raw.shape[1] != ndim:
        raise Invalid("shape")
    if raw.size and (int(raw.max()) > 2**63 - 1 or int(raw.min()) < -(2**63)):
        raise Invalid("range")
    return raw


def _model_shape(shape: Any, ndim: int) -> tuple[int, ...]:
    try:
        entries = [shape] if np.ndim(shape) == 0 and not isinstance(shape, (str, bytes)) else shape
        if isinstance(entries, (str, bytes)):
            raise TypeError("a string is not a shape")
        crop = tuple(operator.index(n) for n in entries)
    except Exception as exc:
        raise Invalid(exc) from exc
    if len(crop) != ndim or any(n < 0 for n in crop):
        raise Invalid("crop shape")
    return crop


def _model_fill(fill: Any, za: zarr.Array, dtype: np.dtype) -> np.ndarray:
    if fill is None:
        fill = za.fill_value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(fill, dtype=dtype).reshape(())
    except Exception as exc:
        raise Invalid(exc) from exc


def _reference(
    full: np.ndarray, starts: np.ndarray, crop: tuple[int, ...], boundary: Any, fill: np.ndarray
) -> np.ndarray:
    if boundary not in ("error", "fill") or not isinstance(boundary, str):
        raise Invalid("boundary")
    n = starts.shape[0]
    if n and math.prod(crop) * n * full.dtype.itemsize > 2**40:
        raise Invalid("too large")  # np.empty rejects it
    try:
        result = np.empty((n, *crop), dtype=full.dtype)
    except ValueError as exc:  # "array is too big" (even with no elements)
        raise Invalid(exc) from exc
    for i, start in enumerate(starts.tolist()):
        inside = all(0 <= s and s + c <= e for s, c, e in zip(start, crop, full.shape, strict=True))
        if not inside and boundary == "error":
            raise Invalid("outside")
        result[i] = fill
        lo = [min(max(s, 0), e) for s, e in zip(start, full.shape, strict=True)]
        hi = [max(min(s + c, e), 0) for s, c, e in zip(start, crop, full.shape, strict=True)]
        if all(b > a for a, b in zip(lo, hi, strict=True)):
            src = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
            result[(i, *dst)] = full[src]
    return result


@st.composite
def crop_starts(draw: st.DrawFn, shape: tuple[int, ...]) -> Any:
    ndim = len(shape)
    n = draw(st.integers(0, 4))
    coord = st.integers(0, max(shape, default=0)) | st.integers(-6, max(shape, default=0) + 6)
    coord = (
        coord
        | coord
        | st.sampled_from(
            [2**63 - 1, 2**63 - 3, -(2**63), -(2**63) + 2, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]
        )
    )
    rows = draw(st.lists(st.lists(coord, min_size=ndim, max_size=ndim), min_size=n, max_size=n))
    how = draw(
        st.sampled_from(["int64"] * 4 + ["dtype", "dtype", "list", "list", "hostile", "wrong-ndim"])
    )
    if how == "list":
        return rows
    if how in ("int64", "dtype"):
        kind = np.int64 if how == "int64" else draw(st.sampled_from([*NP_INT_TYPES, np.float64]))
        info = np.iinfo(kind) if np.dtype(kind).kind in "iu" else None
        if info is not None:
            rows = [[min(max(v, info.min), info.max) for v in row] for row in rows]
        return np.array(rows, dtype=kind).reshape(n, ndim)
    if how == "wrong-ndim":
        return np.zeros(draw(st.sampled_from([(n,), (n, ndim + 1), (1, n, ndim), (n, 0)])), int)
    return draw(st.sampled_from([
        None, 3, "0", [[0.5] * ndim], np.ones((1, ndim), dtype=bool), [[None] * ndim],
        np.zeros((1, ndim), dtype=object), [], np.array([], dtype=np.float32), [[1] * ndim, [2]],
    ]))  # fmt: skip


@st.composite
def crop_shapes(draw: st.DrawFn, shape: tuple[int, ...]) -> Any:
    ndim = len(shape)
    # Huge extents only where the result's byte size overflows (or is 0): sizes in between
    # would really be allocated.
    entry = st.integers(0, max(shape, default=0) + 2) | small_numpy_ints
    huge = st.sampled_from([2**62, 2**63 - 1, 2**63, 2**64, 2**65, -(2**62), -(2**63) - 1])
    how = draw(st.sampled_from(["valid"] * 6 + ["huge", "hostile", "length"]))
    if how == "valid":
        crop = draw(st.lists(entry, min_size=ndim, max_size=ndim))
        return crop[0] if ndim == 1 and draw(st.booleans()) else tuple(crop)
    if how == "huge":
        crop = draw(st.lists(entry | huge, min_size=ndim, max_size=ndim))
        return tuple(crop)
    if how == "length":
        return tuple(draw(st.lists(entry, min_size=0, max_size=4)))
    bad = draw(st.sampled_from([-1, 2.0, 2.5, "2", None, float("nan"), True]))
    crop = draw(st.lists(entry, min_size=ndim, max_size=ndim))
    if crop:
        crop[draw(st.integers(0, ndim - 1))] = bad
    return draw(st.sampled_from([tuple(crop), "22", b"2", None, np.array(crop, dtype=object)]))


fills = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.floats(allow_nan=True) | st.integers(-100, 100),
    st.sampled_from(["x", "1", 2**70, -(2**70), 1 + 2j, [1, 2], [], object(), np.float32(1.5)]),
)
boundaries = st.sampled_from(["error"] * 4 + ["fill"] * 5 + ["Fill", "", None, 1, b"fill"])


def _out_buffer(draw: st.DrawFn, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    how = draw(st.sampled_from([
        "none", "none", "none", "good", "good", "good", "memoryview", "dtype", "shape",
        "strided", "readonly", "fortran", "list", "bytearray",
    ]))  # fmt: skip
    try:
        good = np.full(shape, 77, dtype=dtype)
    except (ValueError, MemoryError):
        return None
    if how == "good":
        return good
    if how == "memoryview":
        return memoryview(good)
    if how == "dtype":
        return good.astype(np.float32 if dtype != np.float32 else np.float64)
    if how == "shape":
        return np.full((*shape, 1), 77, dtype=dtype) if shape else np.zeros(1, dtype)
    if how == "strided":
        return np.repeat(good, 2, axis=-1)[..., ::2] if good.ndim else good
    if how == "readonly":
        good.flags.writeable = False
        return good
    if how == "fortran":
        return np.asfortranarray(good)
    if how == "list":
        return good.tolist()
    if how == "bytearray":
        return bytearray(good.nbytes)
    return None


def _model_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if out is None:
        return
    if isinstance(out, list):
        raise Invalid("list")
    arr = np.asarray(out)
    if arr.dtype != dtype or arr.shape != shape:
        raise Invalid("dtype/shape")
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise Invalid("layout")


@pytest.mark.parametrize("name", ARRAY_NAMES)
@settings(max_examples=4 * settings().max_examples)
@given(data=st.data())
def test_read_crops_arguments(arrays, name, data):
    ca, za, full = arrays[name]
    starts = data.draw(crop_starts(full.shape), label="starts")
    shape = data.draw(crop_shapes(full.shape), label="shape")
    boundary = data.draw(boundaries, label="boundary")
    fill = data.draw(fills, label="fill")
    out = None
    try:
        start_arr = _model_starts(starts, full.ndim)
        crop = _model_shape(shape, full.ndim)
        fill_arr = _model_fill(fill, za, full.dtype)
        expected = _reference(full, start_arr, crop, boundary, fill_arr)
        out = _out_buffer(data.draw, expected.shape, full.dtype)
        _model_out(out, expected.shape, full.dtype)
    except Invalid as why:
        event(f"invalid: {why}"[:40])
        kind, got = _attempt(
            lambda: ca.read_crops(starts, shape, out=out, boundary=boundary, fill=fill)
        )
        assert kind == "error", f"expected an exception ({why}), got {got!r}"
        assert isinstance(got, CLEAN), f"{type(got).__name__}: {got} (model: {why})"
        return
    kind, got = _attempt(
        lambda: ca.read_crops(starts, shape, out=out, boundary=boundary, fill=fill)
    )
    event(f"valid, {kind}, {len(start_arr)} crops, boundary {boundary}, out {type(out).__name__}")
    if kind == "error" and max(crop, default=0) >= 2**62:
        # No elements, but an absurd extent: numpy may refuse even the empty result array.
        assert isinstance(got, CLEAN), f"{type(got).__name__}: {got}"
        return
    assert kind == "ok", f"zarrcrop raised {got!r}"
    if out is not None:
        assert got is out
        got = np.asarray(out)
    assert_same(got, expected)
