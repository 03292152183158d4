"""Public API of zarrcrop: opening, groups, attributes, fallback, strict mode, errors, threads."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from dataclasses import replace
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarr.storage
import zarrcrop
from helpers import (
    ArraySpec,
    Blosc,
    assert_fill_value_same,
    assert_same,
    create_array,
    make_data,
)

NATIVE_V2 = ArraySpec(
    zarr_format=2,
    shape=(10, 13, 3),
    chunks=(4, 5, 2),
    dtype="int16",
    codec=Blosc("lz4", 5, "shuffle"),
    fill_value=-3,
)


@pytest.fixture
def native_v2(tmp_path):
    """A native v2 array with one missing chunk; returns (path, zarr array)."""
    path = tmp_path / "native.zarr"
    data = make_data(NATIVE_V2.shape, NATIVE_V2.dtype, seed=7)
    za = create_array(path, NATIVE_V2, data, missing=[(1, 1, 0)])
    za.attrs["units"] = "counts"
    return path, za


# --------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------


def test_public_names_are_exported():
    assert issubclass(zarrcrop.ChunkError, ValueError)
    assert issubclass(zarrcrop.FallbackError, Exception)
    assert isinstance(zarrcrop.CropArray, type)
    assert isinstance(zarrcrop.CropGroup, type)


@pytest.mark.parametrize("kind", ["str", "Path", "zarr.Array", "str-slash"])
def test_open_array_store_forms(native_v2, kind):
    path, za = native_v2
    store = {"str": str(path), "Path": Path(path), "zarr.Array": za, "str-slash": f"{path}/"}[kind]
    ca = zarrcrop.open(store)
    assert isinstance(ca, zarrcrop.CropArray)
    assert ca.native, ca.fallback_reason
    assert ca.fallback_reason is None
    assert_same(ca[...], za[...])
    assert_same(ca[2:9, -7:, 1], za[2:9, -7:, 1])


def test_reopen_sees_rewritten_data(native_v2):
    path, za = native_v2
    before = np.asarray(zarrcrop.open(path)[...])
    za[2:9, 3:11] = 1234
    za[8:, 9:, :] = za.fill_value  # chunks that become all fill_value are deleted
    after = zarrcrop.open(path)[...]
    assert_same(after, za[...])
    assert not np.array_equal(before, after)


def test_open_zarr_array_opened_read_only(native_v2):
    path, za = native_v2
    ca = zarrcrop.open(zarr.open_array(str(path), mode="r"))
    assert ca.native
    assert_same(ca[...], za[...])


@pytest.mark.parametrize("zarr_format", [2, 3], ids=["v2", "v3"])
def test_open_array_inside_group(tmp_path, zarr_format):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=zarr_format)
    za = group.create_array(
        "lr/720p/rgb", shape=(2, 3, 20, 30), chunks=(1, 3, 8, 8), dtype="u1", compressors=None
    )
    za[...] = make_data(za.shape, za.dtype, seed=3)

    for store in (str(tmp_path / "g.zarr"), tmp_path / "g.zarr"):
        ca = zarrcrop.open(store, "lr/720p/rgb")
        assert ca.native, ca.fallback_reason
        assert_same(ca[1, :, 3:17, ::4], za[1, :, 3:17, ::4])
    ca = zarrcrop.open(tmp_path / "g.zarr", path="lr/720p/rgb")
    assert_same(ca[...], za[...])


# --------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------


@pytest.fixture(params=[2, 3], ids=["v2", "v3"])
def group_tree(request, tmp_path):
    """Group tree: gt, lr/720p/rgb, lr/360p/rgb, meta (empty subgroup); returns (path, zg)."""
    path = tmp_path / "tree.zarr"
    zg = zarr.open_group(str(path), mode="w", zarr_format=request.param)
    zg.attrs.update({"fps": 30, "title": "tree", "nested": {"a": [1, 2]}})
    compressor = (
        numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE)
        if request.param == 2
        else zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
    )
    shapes = {"gt": (2, 3, 40, 40), "lr/720p/rgb": (2, 3, 20, 20), "lr/360p/rgb": (2, 3, 10, 10)}
    for i, (name, shape) in enumerate(shapes.items()):
        za = zg.create_array(
            name, shape=shape, chunks=(1, 3, 8, 8), dtype="u1", compressors=compressor
        )
        za[...] = make_data(shape, "u1", seed=i)
        za.attrs["name"] = name
    zg["lr/720p"].attrs["height"] = 720
    zg.create_group("meta")
    return path, zg


def test_open_group_navigation(group_tree):
    path, zg = group_tree
    g = zarrcrop.open_group(path)
    assert isinstance(g, zarrcrop.CropGroup)

    by_path = g["lr/720p/rgb"]
    nested = g["lr"]["720p"]["rgb"]
    assert isinstance(g["lr"], zarrcrop.CropGroup)
    assert isinstance(g["lr"]["720p"], zarrcrop.CropGroup)
    assert isinstance(g["lr/720p"], zarrcrop.CropGroup)
    assert isinstance(g["meta"], zarrcrop.CropGroup)
    for ca in (by_path, nested, g["gt"], g["lr/360p/rgb"]):
        assert isinstance(ca, zarrcrop.CropArray)
        assert ca.native, ca.fallback_reason

    expected = zg["lr/720p/rgb"]
    assert_same(by_path[...], expected[...])
    assert_same(nested[1, 2, 3:11, -9:], expected[1, 2, 3:11, -9:])
    assert_same(g["gt"][0, :, 5:37, 5:37], zg["gt"][0, :, 5:37, 5:37])


def test_open_group_keys_iteration_len_contains(group_tree):
    path, zg = group_tree
    g = zarrcrop.open_group(str(path))

    assert sorted(g.keys()) == sorted(zg.keys()) == ["gt", "lr", "meta"]
    assert sorted(g) == sorted(zg)
    assert all(isinstance(name, str) for name in g)
    assert len(g) == len(zg) == 3
    assert "gt" in g
    assert "lr" in g
    assert "missing" not in g
    assert "lr/720p" in g
    assert "lr/720p/rgb" in g
    assert "lr/missing" not in g
    assert sorted(g["lr"].keys()) == ["360p", "720p"]
    assert list(g["lr"]["720p"]) == ["rgb"]
    assert len(g["meta"]) == 0


def test_open_group_attrs(group_tree):
    path, zg = group_tree
    g = zarrcrop.open_group(path)
    assert dict(g.attrs) == dict(zg.attrs) == {"fps": 30, "title": "tree", "nested": {"a": [1, 2]}}
    assert dict(g["lr/720p"].attrs) == {"height": 720}
    assert dict(g["lr/720p/rgb"].attrs) == dict(zg["lr/720p/rgb"].attrs)
    assert g["gt"].attrs["name"] == "gt"


@pytest.mark.parametrize("key", ["missing", "lr/missing", "lr/720p/rgb/extra", "gt/x"])
def test_open_group_missing_key_raises_key_error(group_tree, key):
    path, _ = group_tree
    g = zarrcrop.open_group(path)
    with pytest.raises(KeyError):
        g[key]


def _frames(exc):
    """Traceback frames of ``exc`` and of the exceptions it chains."""
    return len(traceback.extract_tb(exc.__traceback__)) + (
        _frames(exc.__cause__ or exc.__context__)
        if (exc.__cause__ or exc.__context__) and not exc.__suppress_context__
        else 0
    )


@pytest.mark.parametrize(
    ("key", "listed"),
    [
        ("missing", "'gt', 'lr', 'meta'"),
        ("lr/missing", "'360p', '720p'"),
        ("lr/720p/nope", "'rgb'"),
        ("nope/rgb", "'gt', 'lr', 'meta'"),
        ("meta/x", "no members"),
    ],
)
def test_missing_key_lists_the_members(group_tree, key, listed):
    path, _ = group_tree
    with pytest.raises(KeyError) as info:
        zarrcrop.open_group(path)[key]
    message = info.value.args[0]
    assert key in message and listed in message and str(path) in message, message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert _frames(info.value) <= 2, traceback.format_exception(info.value)


@pytest.mark.parametrize("key", ["gt/x", "lr/720p/rgb/extra"])
def test_key_below_an_array_says_it_is_an_array(group_tree, key):
    path, _ = group_tree
    with pytest.raises(KeyError, match="is an array, not a group"):
        zarrcrop.open_group(path)[key]


def test_write_to_read_only_array_says_how(group_tree):
    path, zg = group_tree
    before = np.asarray(zg["gt"][...])
    for ca in (zarrcrop.open(path, "gt"), zarrcrop.open_group(path)["gt"]):
        with pytest.raises(TypeError, match=r'open_group\(path, mode="r\+"\)') as info:
            ca[0, 0] = 1
        assert str(path / "gt") in str(info.value)
        assert info.value.__cause__ is None and info.value.__context__ is None
        assert _frames(info.value) <= 2
    assert_same(zarr.open_array(str(path / "gt"), mode="r")[...], before)


def test_writable_group_arrays_still_accept_writes(tmp_path):
    root = zarrcrop.open_group(tmp_path / "w.zarr", mode="w")
    arr = root.create_dataset("a", shape=(4,), chunks=(2,), dtype="int8")
    arr[1:3] = 5
    assert_same(zarrcrop.open(tmp_path / "w.zarr", "a")[...], np.array([0, 5, 5, 0], "int8"))


# --------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------

ATTRIBUTE_CASES = {
    "v2-int16-blosc": NATIVE_V2,
    "v2-f4-nan-none": ArraySpec(2, (7, 9), (3, 4), "float32", None, float("nan")),
    "v2-f8-fill-none": ArraySpec(2, (7,), (3,), "float64", None, None),
    "v2-c8-slash": ArraySpec(
        2, (5, 6), (2, 4), "complex64", Blosc("zstd", 0, "noshuffle"), 1 + 2j,
        {"name": "v2", "separator": "/"},
    ),
    "v3-bytes-f4-inf": ArraySpec(
        3, (6, 5, 4), (4, 4, 4), "float32", None, float("-inf"),
        {"name": "default", "separator": "/"},
    ),
    "v3-blosc-bool": ArraySpec(
        3, (11,), (4,), "bool", Blosc("blosclz", 9, "bitshuffle"), True,
        {"name": "default", "separator": "."},
    ),
    "v3-v2keys-u64": ArraySpec(
        3, (3, 3), (2, 2), "uint64", Blosc("zlib", 1, "shuffle"), 2**64 - 1,
        {"name": "v2", "separator": "."},
    ),
}  # fmt: skip


@pytest.mark.parametrize("spec", ATTRIBUTE_CASES.values(), ids=ATTRIBUTE_CASES.keys())
def test_attributes_equal_zarr(tmp_path, spec):
    path = tmp_path / "a.zarr"
    za = create_array(path, spec, make_data(spec.shape, spec.dtype, seed=1))
    za.attrs.update({"k": "v", "n": [1, 2.5]})
    za = zarr.open_array(str(path), mode="r")
    ca = zarrcrop.open(path)

    assert ca.native, ca.fallback_reason
    assert ca.shape == za.shape and isinstance(ca.shape, tuple)
    assert ca.dtype == za.dtype and isinstance(ca.dtype, np.dtype)
    assert ca.chunks == za.chunks and isinstance(ca.chunks, tuple)
    assert ca.ndim == za.ndim
    assert ca.size == za.size
    assert ca.nbytes == za.nbytes
    assert ca.zarr_format == spec.zarr_format
    assert dict(ca.attrs) == dict(za.attrs) == {"k": "v", "n": [1, 2.5]}
    assert_fill_value_same(ca.fill_value, za.fill_value, za.dtype)
    assert_same(ca[...], za[...])


# --------------------------------------------------------------------------------------
# Fallback
# --------------------------------------------------------------------------------------

_BASE2 = ArraySpec(2, (9, 10), (4, 3), "int32", Blosc("lz4", 5, "shuffle"), 0)
_BASE3 = ArraySpec(3, (9, 10), (4, 3), "int32", None, 0, {"name": "default", "separator": "/"})

# case id -> (spec, keywords one of which the fallback reason must contain, lower-cased)
FALLBACK_CASES = {
    "v2-delta-filter": (replace(_BASE2, layout="v2-delta-filter"), ("delta",)),
    "v2-numcodecs-lz4": (replace(_BASE2, layout="v2-numcodecs-lz4"), ("lz4", "compressor")),
    "v3-transpose": (replace(_BASE3, layout="v3-transpose"), ("transpose", "codec")),
}

# Layouts that once fell back and are now read natively.
NATIVE_EXTRA_CASES = {
    "v2-order-F": replace(_BASE2, layout="v2-order-F"),
    "v2-big-endian": replace(_BASE2, dtype="float32", layout="v2-big-endian"),
    "v2-numcodecs-zstd": replace(_BASE2, layout="v2-numcodecs-zstd"),
    "v3-default-codecs": replace(_BASE3, layout="v3-default-codecs"),
    "v3-big-endian": replace(_BASE3, dtype="complex128", layout="v3-big-endian"),
    "v3-zstd-crc32c": replace(_BASE3, layout="v3-zstd-crc32c"),
    "v3-blosc-crc32c": replace(_BASE3, layout="v3-blosc-crc32c"),
    "v3-sharding": replace(_BASE3, layout="v3-sharding"),
    "v2-numcodecs-gzip": replace(_BASE2, layout="v2-numcodecs-gzip"),
    "v3-gzip": replace(_BASE3, layout="v3-gzip"),
}


@pytest.mark.parametrize("spec", NATIVE_EXTRA_CASES.values(), ids=NATIVE_EXTRA_CASES.keys())
def test_native_extra_layouts_equal_zarr(tmp_path, spec):
    path = tmp_path / "extra.zarr"
    za = create_array(path, spec, make_data(spec.shape, spec.dtype, seed=5), missing=[(1, 1)])
    ca = zarrcrop.open(path, strict=True)
    assert ca.native and ca.fallback_reason is None
    assert ca.dtype == za.dtype
    selections = [(), ..., (3,), (-1, slice(2, 9, 2)), (slice(-7, None), -4), (slice(1, 8),)]
    for sel in selections:
        assert_same(ca[sel], za[sel])
    assert_same(ca[::-2, 7:1:-3], np.asarray(za[...])[::-2, 7:1:-3])
    starts = np.array([[0, 0], [5, 7], [2, 3]])
    batch = ca.read_crops(starts, (4, 3))
    for i, (y, x) in enumerate(starts):
        assert_same(batch[i], za[y : y + 4, x : x + 3])
    cached = zarrcrop.open(path, cache_bytes=1 << 20)
    assert_same(cached[1:8, 2:9], za[1:8, 2:9])
    assert_same(cached[1:8, 2:9], za[1:8, 2:9])


def _check_fallback_reason(reason, keywords):
    assert isinstance(reason, str)
    assert reason.strip(), "fallback_reason must not be empty"
    assert "\n" not in reason.strip(), f"fallback_reason must be one line: {reason!r}"
    assert any(k in reason.lower() for k in keywords), f"{reason!r} names none of {keywords}"


@pytest.fixture(params=FALLBACK_CASES.values(), ids=FALLBACK_CASES.keys())
def fallback_array(request, tmp_path):
    spec, keywords = request.param
    path = tmp_path / "fb.zarr"
    za = create_array(path, spec, make_data(spec.shape, spec.dtype, seed=5), missing=[(1, 1)])
    return path, za, keywords


def test_fallback_results_equal_zarr(fallback_array):
    path, za, keywords = fallback_array
    ca = zarrcrop.open(path)

    assert ca.native is False
    _check_fallback_reason(ca.fallback_reason, keywords)
    assert ca.shape == za.shape
    assert ca.dtype == za.dtype
    selections = [(), ..., (3,), (-1, slice(2, 9, 2)), (slice(-7, None), -4), (slice(1, 8),)]
    for sel in selections:
        assert_same(ca[sel], za[sel])
    assert_same(ca[::-2, 7:1:-3], np.asarray(za[...])[::-2, 7:1:-3])
    assert_same(ca[[0, 4, 8], 1:5], za[[0, 4, 8], 1:5])


def test_fallback_strict_raises(fallback_array):
    path, _, _ = fallback_array
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(path, strict=True)


def test_fallback_strict_env_raises(fallback_array, monkeypatch):
    path, za, _ = fallback_array
    monkeypatch.setenv("ZARRCROP_STRICT", "1")
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(path)
    # An explicit strict=False overrides the environment default.
    ca = zarrcrop.open(path, strict=False)
    assert not ca.native
    assert_same(ca[...], za[...])


def test_strict_env_is_read_at_open_time(fallback_array, monkeypatch):
    path, _, _ = fallback_array
    ca = zarrcrop.open(path)  # not strict: environment variable unset
    assert not ca.native
    monkeypatch.setenv("ZARRCROP_STRICT", "1")
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(path)
    monkeypatch.setenv("ZARRCROP_STRICT", "0")
    assert not zarrcrop.open(path).native


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_strict_group_member_that_falls_back_raises(tmp_path, monkeypatch, how):
    path = tmp_path / "mixed.zarr"
    zg = zarr.open_group(str(path), mode="w", zarr_format=2)
    native = zg.create_array("native", shape=(4, 4), chunks=(2, 2), dtype="u1", compressors=None)
    native[...] = 3
    zg.create_array(
        "delta", shape=(4, 4), chunks=(2, 2), dtype="u1", filters=[numcodecs.Delta("u1")]
    )
    if how == "environment":
        monkeypatch.setenv("ZARRCROP_STRICT", "1")
        kwargs = {}
    else:
        kwargs = {"strict": True}
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open_group(path, **kwargs)["delta"]
    assert_same(zarrcrop.open_group(path, **kwargs)["native"][...], native[...])
    # not strict: the same member opens and falls back
    assert not zarrcrop.open_group(path, strict=False)["delta"].native


def test_memory_store_falls_back(tmp_path):
    store = zarr.storage.MemoryStore()
    za = zarr.create_array(
        store=store, shape=(12, 7), chunks=(5, 3), dtype="float32", zarr_format=2,
        compressors=numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE), fill_value=float("nan"),
    )  # fmt: skip
    za[:6] = make_data((6, 7), "float32", seed=2)
    ca = zarrcrop.open(za)

    assert ca.native is False
    _check_fallback_reason(ca.fallback_reason, ("store", "memory", "local"))
    assert_same(ca[...], za[...])
    assert_same(ca[4:9, ::2], za[4:9, ::2])
    assert_same(ca[::-1, -1], np.asarray(za[...])[::-1, -1])
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(za, strict=True)


def test_strict_native_array_opens(native_v2, monkeypatch):
    path, za = native_v2
    ca = zarrcrop.open(path, strict=True)
    assert ca.native
    assert_same(ca[1:3], za[1:3])
    monkeypatch.setenv("ZARRCROP_STRICT", "1")
    assert zarrcrop.open(path).native


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


def test_fancy_indexing_in_strict_mode_raises(native_v2, monkeypatch):
    path, _ = native_v2
    ca = zarrcrop.open(path, strict=True)
    with pytest.raises(zarrcrop.FallbackError):
        ca[[0, 3]]
    with pytest.raises(zarrcrop.FallbackError):
        ca[np.arange(10) > 4]
    monkeypatch.setenv("ZARRCROP_STRICT", "1")
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(path)[[1, 2], 0]


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


@pytest.mark.parametrize("sel", EDGE_SELECTIONS.values(), ids=EDGE_SELECTIONS.keys())
def test_basic_indexing_edge_cases(native_v2, sel):
    path, za = native_v2
    ca = zarrcrop.open(path)
    assert_same(ca[sel], za[sel])
    assert_same(ca.read(sel), za[sel])


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


@pytest.mark.parametrize(
    "sel", NEGATIVE_STEP_SELECTIONS.values(), ids=NEGATIVE_STEP_SELECTIONS.keys()
)
def test_negative_steps_follow_numpy(native_v2, sel):
    path, za = native_v2
    ca = zarrcrop.open(path)
    assert_same(ca[sel], np.asarray(za[...])[sel])


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


def test_too_many_indices_raises_index_error(native_v2):
    path, _ = native_v2
    with pytest.raises(IndexError):
        zarrcrop.open(path)[0, 0, 0, 0]


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


def test_zero_length_dimension(tmp_path):
    spec = ArraySpec(2, (0, 5), (3, 2), "uint16", Blosc("zstd", 1, "shuffle"), 9)
    za = create_array(tmp_path / "empty.zarr", spec)
    ca = zarrcrop.open(tmp_path / "empty.zarr")
    assert ca.size == 0 and ca.nbytes == 0
    assert_same(ca[...], za[...])
    assert_same(ca[:, 2], za[:, 2])
    with pytest.raises(IndexError):
        ca[0]


# --------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------


def test_default_num_threads_is_cpu_affinity():
    code = "import os, zarrcrop; print(zarrcrop.get_num_threads(), len(os.sched_getaffinity(0)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARRCROP")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert out[0] == out[1]


def test_set_and_get_num_threads():
    zarrcrop.set_num_threads(3)
    assert zarrcrop.get_num_threads() == 3
    zarrcrop.set_num_threads(1)
    assert zarrcrop.get_num_threads() == 1


@pytest.mark.parametrize("n", [0, -1, 1025, 2**40, 2**64])
def test_set_num_threads_rejects_out_of_range(n):
    zarrcrop.set_num_threads(2)
    with pytest.raises(ValueError, match="between 1 and 1024"):
        zarrcrop.set_num_threads(n)
    assert zarrcrop.get_num_threads() == 2


@pytest.mark.parametrize("n", [2.5, "2", None])
def test_set_num_threads_rejects_non_integers(n):
    zarrcrop.set_num_threads(2)
    with pytest.raises(TypeError):
        zarrcrop.set_num_threads(n)
    assert zarrcrop.get_num_threads() == 2


def test_core_set_num_threads_checks_its_range():
    with pytest.raises(ValueError):
        zarrcrop._core.set_num_threads(1025)


def test_results_equal_at_1_and_4_threads(tmp_path):
    spec = ArraySpec(
        3, (37, 45, 6), (8, 7, 4), "float32", Blosc("lz4", 5, "bitshuffle"), float("nan"),
        {"name": "default", "separator": "/"},
    )  # fmt: skip
    data = make_data(spec.shape, spec.dtype, seed=11, mode="runs")
    za = create_array(tmp_path / "t.zarr", spec, data, missing=[(0, 0, 0), (2, 3, 1), (4, 6, 1)])
    ca = zarrcrop.open(tmp_path / "t.zarr")
    selections = [
        ...,
        (slice(3, 35), slice(2, 44, 2)),
        (5, slice(None), 1),
        (slice(None, None, 7),),
    ]
    results = {}
    for n in (1, 4):
        zarrcrop.set_num_threads(n)
        results[n] = [ca[sel] for sel in selections]
    for sel, one, four in zip(selections, results[1], results[4], strict=True):
        assert_same(one, za[sel])
        assert_same(four, za[sel])


# --------------------------------------------------------------------------------------
# Tutorial read pattern
# --------------------------------------------------------------------------------------


def test_tutorial_read_pattern(tutorial_group):
    path, gt = tutorial_group
    expected = zarr.open_group(str(path), mode="r")["gt"]
    z = zarrcrop.open_group(path)
    assert z["gt"].native, z["gt"].fallback_reason
    assert z["gt"].shape == (2, 3, 216, 384)
    for t in range(2):
        for top, left in [(0, 0), (120, 288), (50, 70), (96, 96), (17, 201)]:
            crop = z["gt"][t, :, top : top + 96, left : left + 96]
            assert crop.shape == (3, 96, 96)
            assert_same(crop, expected[t, :, top : top + 96, left : left + 96])
            assert_same(crop, gt[t, :, top : top + 96, left : left + 96])


@pytest.mark.parametrize("method", ["create_dataset", "create_array", "require_group"])
def test_creating_in_a_read_only_group_says_how(tutorial_group, method):
    path, _ = tutorial_group
    g = zarrcrop.open_group(path)
    with pytest.raises(AttributeError) as info:
        getattr(g, method)("new", shape=(4,), dtype="uint8")
    message = str(info.value)
    assert "read-only" in message and "mode='r+'" in message and str(path) in message
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        g.nonsense  # noqa: B018
    w = zarrcrop.open_group(path, mode="r+")
    assert w.create_dataset("new", shape=(4,), dtype="uint8").shape == (4,)
