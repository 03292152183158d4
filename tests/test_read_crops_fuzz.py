"""Fuzzing of read_crops' arguments, valid and invalid alike.

Arbitrary starts, crop shapes, boundary modes, fill values and ``out=`` buffers. A small model
says whether the arguments are valid; valid ones must give exactly a NumPy reference built from
the whole array (fill outside it), invalid ones a clean Python exception. Native and fallback
arrays are both checked. (Selections: tests/test_select_fuzz.py.)
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import ARRAY_NAMES, CLEAN, NP_INT_TYPES, assert_same, attempt, fuzz_arrays
from hypothesis import event, given, settings
from hypothesis import strategies as st

# Outputs from the pool, poisoned: a byte left unwritten differs from zarr-python.
pytestmark = pytest.mark.usefixtures("poisoned_output_pool")


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> dict[str, tuple[zarrcrop.CropArray, zarr.Array, np.ndarray]]:
    """name -> (zarrcrop array, zarr-python array, full contents): see helpers.fuzz_arrays."""
    return fuzz_arrays(tmp_path_factory.mktemp("fuzz"))


small_numpy_ints = st.builds(
    lambda kind, value: kind(value), st.sampled_from(NP_INT_TYPES), st.integers(0, 12)
)


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
        kind, got = attempt(
            lambda: ca.read_crops(starts, shape, out=out, boundary=boundary, fill=fill)
        )
        assert kind == "error", f"expected an exception ({why}), got {got!r}"
        assert isinstance(got, CLEAN), f"{type(got).__name__}: {got} (model: {why})"
        return
    kind, got = attempt(lambda: ca.read_crops(starts, shape, out=out, boundary=boundary, fill=fill))
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
