"""Fallback to zarr-python, and strict mode.

Arrays the native reader cannot read (filters, other compressors and codecs, stores that are
not local) are read by zarr-python, equal to it, with a one-line ``fallback_reason``.
``strict=True`` or ``ZARRCROP_STRICT=1`` turns each such fallback into ``FallbackError``: at open,
and at a read that would go through zarr-python (fancy selections). Store kinds:
tests/test_open_stores.py; random layouts: tests/test_select_properties.py.
"""

from __future__ import annotations

from dataclasses import replace

import numcodecs
import numpy as np
import pytest
import zarr
import zarr.storage
import zarrcrop
from helpers import ArraySpec, Blosc, assert_same, create_array, make_data

_BASE2 = ArraySpec(2, (9, 10), (4, 3), "int32", Blosc("lz4", 5, "shuffle"), 0)
_BASE3 = ArraySpec(3, (9, 10), (4, 3), "int32", None, 0, {"name": "default", "separator": "/"})

# case id -> (spec, keywords one of which the fallback reason must contain, lower-cased)
FALLBACK_CASES = {
    "v2-delta-filter": (replace(_BASE2, layout="v2-delta-filter"), ("delta",)),
    "v2-numcodecs-lz4": (replace(_BASE2, layout="v2-numcodecs-lz4"), ("lz4", "compressor")),
    "v3-transpose": (replace(_BASE3, layout="v3-transpose"), ("transpose", "codec")),
}


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
