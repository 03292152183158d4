"""Comparisons: bit-identical results, fill values, what error messages name, and the
expected result of a selection (zarr-python's, or NumPy's for negative steps)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr


def assert_same(actual: Any, expected: Any) -> None:
    """Equal shape, dtype and bit-identical values (NaN payloads and -0.0 included)."""
    a = np.asarray(actual)
    e = np.asarray(expected)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    if a.ndim == 0 and e.dtype.isnative:
        # zarr-python returns some 0-d results as NumPy scalars, and NumPy scalars are
        # always native-endian; zarrcrop may return a 0-d array of the array's own
        # (e.g. big-endian) dtype. Equal up to byte order is what matters there.
        a = a.astype(a.dtype.newbyteorder("="))
    assert a.dtype == e.dtype, f"dtype {a.dtype} != expected {e.dtype}"
    np.testing.assert_array_equal(a, e)
    a_bytes = np.ascontiguousarray(a).tobytes()
    e_bytes = np.ascontiguousarray(e).tobytes()
    if a_bytes != e_bytes:
        bad = np.flatnonzero(
            np.frombuffer(a_bytes, np.uint8).reshape(-1, a.dtype.itemsize)
            != np.frombuffer(e_bytes, np.uint8).reshape(-1, e.dtype.itemsize)
        )
        raise AssertionError(f"values equal but bytes differ (first differing byte {bad[:5]})")


def assert_fill_value_same(actual: Any, expected: Any, dtype: np.dtype) -> None:
    if expected is None:
        assert actual is None
        return
    assert actual is not None
    assert_same(np.asarray(actual, dtype=dtype), np.asarray(expected, dtype=dtype))


def shape_in_message(message: str, shape: Sequence[int]) -> bool:
    """True if ``message`` mentions ``shape`` as e.g. "(3, 4)", "[3,4]" or "3x4"."""
    if len(shape) == 0:
        return "()" in message or "[]" in message or "scalar" in message.lower()
    pattern = r"\s*[,x\u00d7]\s*".join(str(int(s)) for s in shape)
    return re.search(r"(?<!\d)" + pattern + r"(?!\d)", message) is not None


def dtype_in_message(message: str, dtype: np.dtype | str) -> bool:
    dtype = np.dtype(dtype)
    names = {dtype.name, dtype.str, dtype.str.lstrip("<>|="), dtype.char}
    return any(name and name in message for name in names if len(name) > 1)


def has_negative_step(sel: Any) -> bool:
    items = sel if isinstance(sel, tuple) else (sel,)
    return any(isinstance(s, slice) and s.step is not None and s.step < 0 for s in items)


def expected_read(za: zarr.Array, sel: Any, full: np.ndarray | None = None) -> np.ndarray:
    """What zarrcrop must return: zarr-python's answer, or NumPy on the full array for
    negative steps (which zarr-python rejects)."""
    if has_negative_step(sel):
        if full is None:
            full = np.asarray(za[...])
        return np.asarray(full[sel])
    return np.asarray(za[sel])
