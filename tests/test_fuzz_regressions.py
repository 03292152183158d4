"""Regression tests for findings of the fuzz harness (fuzz/fuzz_chunks.py) and the hostile-input
tests of issue 7. Each case rebuilds the bad input in code.

Finding 1 (fixed): read_crops computed start + crop_shape in int64 without an overflow check
(signed overflow, no IndexError, uninitialised output); now such crops count as reaching past
the array.
"""

from __future__ import annotations

import numpy as np
import pytest

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
