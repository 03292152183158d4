"""Opening arrays and groups: zarrcrop.open / open_group with paths, zarr arrays and paths
inside groups; group navigation, keys, attributes and the errors for missing keys and writes;
array metadata and attributes equal to zarr-python's; CropArray's arguments.

Other store kinds (URLs, Store objects): tests/test_open_stores.py; chunk files that are not
plain files: tests/test_open_special_files.py; fallback and strict mode: tests/test_fallback.py.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import (
    NATIVE_V2,
    ArraySpec,
    Blosc,
    assert_fill_value_same,
    assert_same,
    create_array,
    make_data,
)

# --------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------


def test_public_names_are_exported():
    assert issubclass(zarrcrop.ChunkError, ValueError)
    assert issubclass(zarrcrop.FallbackError, Exception)
    assert isinstance(zarrcrop.CropArray, type)
    assert isinstance(zarrcrop.CropGroup, type)


@pytest.mark.native
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


@pytest.mark.native
def test_reopen_sees_rewritten_data(native_v2):
    path, za = native_v2
    before = np.asarray(zarrcrop.open(path)[...])
    za[2:9, 3:11] = 1234
    za[8:, 9:, :] = za.fill_value  # chunks that become all fill_value are deleted
    after = zarrcrop.open(path)[...]
    assert_same(after, za[...])
    assert not np.array_equal(before, after)


@pytest.mark.native
def test_open_zarr_array_opened_read_only(native_v2):
    path, za = native_v2
    ca = zarrcrop.open(zarr.open_array(str(path), mode="r"))
    assert ca.native
    assert_same(ca[...], za[...])


@pytest.mark.native
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


@pytest.mark.native
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


@pytest.mark.native
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


# Fuzz finding 9: cache_bytes past the native size_t range gave pybind11's raw "incompatible
#    constructor arguments" TypeError; a float was truncated.
@pytest.mark.parametrize("bad", [2**63, 2**64, 2**70, -1])
def test_out_of_range_cache_bytes_raise_value_error(small, bad):
    import zarrcrop

    with pytest.raises(ValueError, match="cache_bytes"):
        zarrcrop.CropArray(small.zarr, cache_bytes=bad)


def test_non_integer_cache_bytes_raise_type_error(small):
    import zarrcrop

    with pytest.raises(TypeError):
        zarrcrop.CropArray(small.zarr, cache_bytes=1.5)
    assert zarrcrop.CropArray(small.zarr, cache_bytes=np.int64(1 << 20)).native
