"""Fuzzing of selections, valid and invalid alike.

``__getitem__`` / ``read``: arbitrary selections (integers of every kind and size, slices with
any bounds and steps, Ellipsis, None, booleans, floats, strings, lists and arrays) are compared
with zarr-python: when it returns data zarrcrop returns the identical array (dtype, shape and
bytes, NaN included); when it raises zarrcrop raises too.

Deliberate difference: zarr-python rejects negative slice steps; zarrcrop gives NumPy's answer
for them (see the README). Selections with a negative step are compared with NumPy on the whole
array instead; when they also hold something beyond basic indexing (then read by zarr-python)
an exception is accepted. (read_crops' arguments: tests/test_read_crops_fuzz.py.)
"""

from __future__ import annotations

import copy
import math
import operator
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

HUGE = [2**31, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**65]
HUGE_INTS = HUGE + [-n for n in HUGE] + [-(2**63) - 1]


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> dict[str, tuple[zarrcrop.CropArray, zarr.Array, np.ndarray]]:
    """name -> (zarrcrop array, zarr-python array, full contents): see helpers.fuzz_arrays."""
    return fuzz_arrays(tmp_path_factory.mktemp("fuzz"))


# ------------------------------------------------------------------------------ selections


@st.composite
def numpy_ints(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(NP_INT_TYPES))
    info = np.iinfo(kind)
    value = draw(st.integers(max(info.min, -12), 12) | st.sampled_from([info.min, info.max]))
    return kind(value)


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
        kind, expected = attempt(lambda: np.asarray(full[sel]))
        if not _basic(sel) and kind == "ok":
            # Not basic: zarrcrop hands it to zarr-python, which rejects negative steps.
            got_kind, got = attempt(lambda: ca[sel])
            if got_kind == "error":
                _check_error(got, sel, "NumPy's answer or an exception")
                return
    else:
        kind, expected = attempt(lambda: za[copy.deepcopy(sel)])
    got_kind, got = attempt(lambda: ca[sel])
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
    out_kind, out_got = attempt(lambda: ca.read(sel, out=buf))
    assert out_kind == "ok", f"{sel!r}: read(out=) raised {out_got!r}"
    assert out_got is buf
    assert_same(buf, np.asarray(expected))
    # Unusable out= buffers are rejected and left untouched.
    for bad in _bad_outs(np.shape(expected), ca.dtype):
        before = np.array(bad, copy=True)
        bad_kind, bad_got = attempt(lambda bad=bad: ca.read(sel, out=bad))
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
