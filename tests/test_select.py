"""Selections: basic indexing (integers, slices with any bounds and steps, Ellipsis, short
tuples) equal to zarr-python, negative steps equal to NumPy, errors (out of range, too many
indices, zero steps), 0-d and zero-length arrays, and fancy selections (handed to zarr-python,
equal to it).

Property tests against zarr-python: tests/test_select_properties.py; fuzzing of selections:
tests/test_select_fuzz.py; out= buffers: tests/test_out.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarrcrop
from helpers import ArraySpec, Blosc, assert_same, create_array

# --------------------------------------------------------------------------------------
# Basic indexing edge cases and errors
# --------------------------------------------------------------------------------------

EDGE_SELECTIONS = {
    "empty-tuple": (),
    "ellipsis": ...,
    "int": 3,
    "negative-int": -1,
    "all-ints": (9, 12, 2),
    "all-negative-ints": (-10, -13, -3),
    "ellipsis-int": (..., 1),
    "int-ellipsis": (2, ...),
    "middle-ellipsis": (1, ..., 0),
    "ellipsis-all": (4, 5, ..., 1),
    "short-tuple": (slice(2, 8),),
    "step": (slice(None, None, 3), slice(1, None, 4)),
    "negative-bounds": (slice(-8, -2), slice(-100, 100)),
    "empty-slice": (slice(5, 2), slice(None)),
    "out-of-range-slice": (slice(20, 30),),
    "big-step": (slice(None, None, 100), slice(None, None, 12)),
    "numpy-ints": (np.int64(3), np.int32(-2), np.uint8(1)),
    "numpy-int-slice-bounds": (slice(np.int64(1), np.int16(9), np.int64(2)), np.intp(4)),
    "huge-bounds": (slice(-(2**70), 2**70), slice(2**64, None)),
    "step-just-below-2**63": (slice(None, None, 2**63 - 1),),
    "step-2**63": (slice(None, None, 2**63),),
    "step-2**64-empty": (1, slice(2**64, None, 2**64)),
    "huge-bounds-and-step": (slice(-(2**70), 2**70, 2**65), 3),
}


@pytest.mark.native
@pytest.mark.parametrize("sel", EDGE_SELECTIONS.values(), ids=EDGE_SELECTIONS.keys())
def test_basic_indexing_edge_cases(native_v2, sel):
    path, za = native_v2
    ca = zarrcrop.open(path)
    assert_same(ca[sel], za[sel])
    assert_same(ca.read(sel), za[sel])


@pytest.mark.native
def test_read_default_selection_is_everything(native_v2):
    path, za = native_v2
    assert_same(zarrcrop.open(path).read(), za[...])


NEGATIVE_STEP_SELECTIONS = {
    "reverse-dim0": (slice(None, None, -1),),
    "reverse-all": (slice(None, None, -1),) * 3,
    "step-minus-3-bounds": (slice(8, 1, -3), slice(-2, None, -2)),
    "negative-bounds": (slice(-1, -9, -2), 4, slice(None, None, -1)),
    "empty": (slice(2, 8, -1),),
    "ellipsis": (..., slice(None, 0, -1)),
    "step-minus-2**63": (slice(None, None, -(2**63)),),
    "huge-negative-step-and-bounds": (slice(2**70, -(2**70), -(2**65)), 2),
}


@pytest.mark.native
@pytest.mark.parametrize(
    "sel", NEGATIVE_STEP_SELECTIONS.values(), ids=NEGATIVE_STEP_SELECTIONS.keys()
)
def test_negative_steps_follow_numpy(native_v2, sel):
    path, za = native_v2
    ca = zarrcrop.open(path)
    assert_same(ca[sel], np.asarray(za[...])[sel])


@pytest.mark.native
@pytest.mark.parametrize(
    "sel", [10, -11, (0, 13), (0, -14), (0, 0, 3), (..., -4), (10, slice(None))]
)
def test_out_of_range_int_raises_index_error(native_v2, sel):
    path, za = native_v2
    ca = zarrcrop.open(path)
    with pytest.raises(IndexError):
        za[sel]
    with pytest.raises(IndexError):
        ca[sel]
    with pytest.raises(IndexError):
        ca.read(sel)


@pytest.mark.native
def test_too_many_indices_raises_index_error(native_v2):
    path, _ = native_v2
    with pytest.raises(IndexError):
        zarrcrop.open(path)[0, 0, 0, 0]


@pytest.mark.native
@pytest.mark.parametrize("sel", [slice(None, None, 0), (1, slice(2, 5, 0))])
def test_zero_step_raises_value_error(native_v2, sel):
    path, _ = native_v2
    ca = zarrcrop.open(path)
    with pytest.raises(ValueError):
        ca[sel]
    with pytest.raises(ValueError):
        ca.read(sel)


ZERO_D_CASES = {
    "v2-native": ArraySpec(2, (), (), "float64", None, 1.5),
    "v2-blosc": ArraySpec(2, (), (), "int16", Blosc("zstd", 3, "shuffle"), 4),
    "v3-native": ArraySpec(3, (), (), "float32", None, 1.5, {"name": "default", "separator": "/"}),
    "v2-big-endian": ArraySpec(2, (), (), "float32", None, 1.5, layout="v2-big-endian"),
    "v2-delta-filter": ArraySpec(2, (), (), "int32", None, 3, layout="v2-delta-filter"),
    "v3-default-codecs": ArraySpec(
        3, (), (), "int32", None, 4, {"name": "default", "separator": "/"}, "v3-default-codecs"
    ),
}


@pytest.mark.parametrize("spec", ZERO_D_CASES.values(), ids=ZERO_D_CASES.keys())
def test_zero_dimensional_array(tmp_path, spec):
    path = tmp_path / "scalar.zarr"
    za = create_array(path, spec)
    ca = zarrcrop.open(path)
    assert ca.shape == () and ca.ndim == 0 and ca.size == 1
    assert ca.native == spec.native
    assert_same(ca[()], za[()])  # missing chunk: fill value
    za[()] = -2
    ca = zarrcrop.open(path)
    for sel in [(), ...]:
        assert_same(ca[sel], za[sel])
        assert_same(ca.read(sel), za[sel])
    out = np.empty((), dtype=ca.dtype)
    assert ca.read((), out=out) is out
    assert_same(out, za[()])
    with pytest.raises(IndexError):
        ca[0]


@pytest.mark.native
def test_zero_length_dimension(tmp_path):
    spec = ArraySpec(2, (0, 5), (3, 2), "uint16", Blosc("zstd", 1, "shuffle"), 9)
    za = create_array(tmp_path / "empty.zarr", spec)
    ca = zarrcrop.open(tmp_path / "empty.zarr")
    assert ca.size == 0 and ca.nbytes == 0
    assert_same(ca[...], za[...])
    assert_same(ca[:, 2], za[:, 2])
    with pytest.raises(IndexError):
        ca[0]


@pytest.mark.native
@pytest.mark.parametrize(
    "sel", [(slice(0, 5, 0),), (slice(None), slice(None, None, 0)), (0, slice(3, 1, 0))]
)
def test_zero_step_in_read_with_out_raises(small, sel):
    out = np.zeros((10, 12), dtype=np.int16)
    with pytest.raises(ValueError):
        small.read(sel, out=out)
    assert not out.any()


# --------------------------------------------------------------------------------------
# Fancy indexing
# --------------------------------------------------------------------------------------

FANCY_SELECTIONS = {
    "int-list": [0, 3, 9],
    "int-list-repeated-unsorted": [5, 0, 0, 9],
    "int-array-with-slice": (np.array([1, 4]), slice(2, 11)),
    "bool-mask-and-int": (np.arange(10) % 3 == 0, 2),
    "int-and-list": (3, [12, 0, 4]),
    "negative-list": ([-1, -10], -2),
    "bool-mask-dim0": (np.arange(10) % 3 == 0, slice(None)),
    "bool-mask-dim1": (slice(None), np.arange(13) > 8),
    "coordinate-arrays": (np.array([0, 9, 4]), np.array([1, 12, 3]), np.array([0, 2, 1])),
}


@pytest.mark.parametrize("sel", FANCY_SELECTIONS.values(), ids=FANCY_SELECTIONS.keys())
def test_fancy_indexing_equals_zarr(native_v2, sel):
    path, za = native_v2
    ca = zarrcrop.open(path)
    assert_same(ca[sel], za[sel])


@pytest.mark.parametrize(
    "sel",
    [([0, 9], slice(None), [2, 0]), ([0, 9], [2, 0])],
    ids=["list-slice-list", "two-lists"],
)
def test_fancy_selection_rejected_by_zarr_raises_index_error(native_v2, sel):
    path, za = native_v2
    with pytest.raises(IndexError):
        za[sel]
    with pytest.raises(IndexError):
        zarrcrop.open(path)[sel]


def test_full_boolean_mask_equals_zarr(native_v2):
    path, za = native_v2
    ca = zarrcrop.open(path)
    mask = np.asarray(za[...]) % 2 == 0
    assert_same(ca[mask], za[mask])


# Fuzz finding 8 (tests/test_select_fuzz.py): zarr-python (3.1) wraps negative entries of
#    integer index arrays around in place: reading ca[np.array([-1])] through the fallback
#    changed the caller's array to [n - 1] (and a second read with an out-of-range [-n - 1]
#    then succeeded). zarrcrop now hands zarr-python copies.
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
