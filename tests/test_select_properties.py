"""Property tests: zarrcrop reads are bit-identical to zarr-python over random layouts."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import zarrcrop
from helpers import (
    FALLBACK_LAYOUTS,
    NATIVE_LAYOUTS,
    ArraySpec,
    Blosc,
    all_chunk_coords,
    array_specs,
    assert_fill_value_same,
    assert_same,
    basic_selections,
    create_array,
    expected_read,
    make_data,
)
from hypothesis import given
from hypothesis import strategies as st

# Outputs from the pool, poisoned: a byte left unwritten differs from zarr-python.
pytestmark = pytest.mark.usefixtures("poisoned_output_pool")

SELECTIONS_PER_ARRAY = 4
_counter = itertools.count()


def build(tmp_path: Path, spec: ArraySpec, data: st.DataObject):
    """Create ``spec`` with random data and a random set of missing chunks; return the
    path, the zarr-python array, the zarrcrop array and the full expected contents."""
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    mode = data.draw(st.sampled_from(["random", "runs", "fill"]), label="data mode")
    if mode == "fill":
        values = None  # nothing written: every chunk missing
    else:
        values = make_data(spec.shape, spec.dtype, seed, mode)
    coords = all_chunk_coords(spec.shape, spec.chunks)
    missing = data.draw(
        st.lists(st.sampled_from(coords), unique=True) if coords else st.just([]),
        label="missing chunks",
    )
    path = tmp_path / f"a{next(_counter)}.zarr"
    za = create_array(path, spec, values, missing)
    ca = zarrcrop.open(path)
    return path, za, ca, np.asarray(za[...])


def check_metadata(ca, za) -> None:
    assert ca.shape == za.shape
    assert ca.dtype == za.dtype
    assert ca.chunks == za.chunks
    assert ca.ndim == za.ndim
    assert ca.size == za.size
    assert ca.nbytes == za.nbytes
    assert ca.zarr_format == za.metadata.zarr_format
    assert_fill_value_same(ca.fill_value, za.fill_value, za.dtype)


@pytest.mark.native
@pytest.mark.parametrize("zarr_format", [2, 3], ids=["v2", "v3"])
@given(data=st.data())
def test_native_basic_selections_match_zarr(tmp_path, zarr_format, data):
    spec = data.draw(array_specs(zarr_format=zarr_format), label="spec")
    _, za, ca, _ = build(tmp_path, spec, data)

    assert ca.native, f"{spec} should be native, fallback_reason={ca.fallback_reason!r}"
    assert ca.fallback_reason is None
    check_metadata(ca, za)
    assert_same(ca[...], za[...])
    for _ in range(SELECTIONS_PER_ARRAY):
        sel = data.draw(basic_selections(spec.shape), label="selection")
        assert_same(ca[sel], za[sel])


@pytest.mark.native
@given(data=st.data())
def test_negative_steps_match_numpy(tmp_path, data):
    spec = data.draw(array_specs(), label="spec")
    _, _, ca, full = build(tmp_path, spec, data)

    assert ca.native
    for _ in range(SELECTIONS_PER_ARRAY):
        sel = data.draw(basic_selections(spec.shape, negative_steps=True), label="selection")
        assert_same(ca[sel], full[sel])


@pytest.mark.native
@given(data=st.data())
def test_read_into_out_matches_zarr(tmp_path, data):
    spec = data.draw(array_specs(), label="spec")
    _, za, ca, full = build(tmp_path, spec, data)
    rng = np.random.default_rng(data.draw(st.integers(0, 1000), label="garbage seed"))

    for _ in range(SELECTIONS_PER_ARRAY):
        negative = data.draw(st.booleans(), label="negative steps")
        sel = data.draw(basic_selections(spec.shape, negative_steps=negative), label="selection")
        expected = expected_read(za, sel, full)
        # Pre-fill with garbage: every element (missing chunks included) must be written.
        out = np.empty(expected.shape, dtype=expected.dtype)
        out.reshape(-1).view(np.uint8)[:] = rng.integers(0, 256, out.nbytes, dtype=np.uint8)
        result = ca.read(sel, out=out)
        assert result is out
        assert_same(out, expected)
        assert_same(ca.read(sel), expected)


@st.composite
def layout_specs(draw, layouts):
    layout = draw(st.sampled_from(layouts), label="layout")
    spec = draw(array_specs(zarr_format=2 if layout.startswith("v2") else 3, layout=layout))
    if layout == "v2-order-F" and len(spec.shape) < 2:
        spec = dataclasses.replace(spec, shape=(*spec.shape, 3), chunks=(*spec.chunks, 2))
    return spec


def fallback_specs():
    return layout_specs(FALLBACK_LAYOUTS)


@pytest.mark.native
@given(data=st.data())
def test_native_extra_layouts_match_zarr(tmp_path, data):
    """F order, big endian, zstd and crc32c codecs: native, and equal to zarr-python."""
    spec = data.draw(layout_specs(NATIVE_LAYOUTS), label="spec")
    _, za, ca, full = build(tmp_path, spec, data)

    assert ca.native, f"{spec.layout} must be native: {ca.fallback_reason}"
    check_metadata(ca, za)
    for _ in range(3):
        negative = data.draw(st.booleans(), label="negative steps")
        sel = data.draw(basic_selections(spec.shape, negative_steps=negative), label="selection")
        assert_same(ca[sel], expected_read(za, sel, full))


# numcodecs' Delta filter warns on inf - inf while encoding random float data
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@given(data=st.data())
def test_fallback_layouts_match_zarr(tmp_path, data):
    spec = data.draw(fallback_specs(), label="spec")
    _, za, ca, full = build(tmp_path, spec, data)

    assert not ca.native, f"{spec.layout} must not be native"
    assert isinstance(ca.fallback_reason, str)
    assert ca.fallback_reason.strip()
    assert "\n" not in ca.fallback_reason.strip()
    check_metadata(ca, za)
    for _ in range(2):
        negative = data.draw(st.booleans(), label="negative steps")
        sel = data.draw(basic_selections(spec.shape, negative_steps=negative), label="selection")
        assert_same(ca[sel], expected_read(za, sel, full))


@pytest.mark.native
@given(data=st.data())
def test_open_zarr_array_object_matches_path(tmp_path, data):
    import zarr

    spec = data.draw(array_specs(), label="spec")
    path, za, ca_from_path, _ = build(tmp_path, spec, data)
    ca = zarrcrop.open(zarr.open_array(str(path), mode="r"))

    assert ca.native
    sel = data.draw(basic_selections(spec.shape), label="selection")
    assert_same(ca[sel], za[sel])
    assert_same(ca[sel], ca_from_path[sel])


# --------------------------------------------------------------------------------------
# Large chunks: several Blosc blocks per chunk, so crops decode only part of a chunk
# --------------------------------------------------------------------------------------

LARGE_LAYOUTS = [
    # (shape, chunks, dtype): chunks of 120 KB .. 512 KB
    ((3, 300, 520), (3, 256, 256), "uint8"),
    ((300, 700), (256, 300), "float32"),
    ((2, 230, 310), (1, 200, 300), "int16"),
    ((130, 1100), (128, 512), "float64"),
]
LARGE_CODECS = [
    Blosc(cname, clevel, shuffle)
    for cname in ("lz4", "lz4hc", "blosclz", "zstd", "zlib")
    for clevel in (0, 1, 5)
    for shuffle in ("noshuffle", "shuffle", "bitshuffle")
]
_large_arrays: dict = {}


@pytest.fixture(scope="module")
def large_dir(tmp_path_factory):
    yield tmp_path_factory.mktemp("large")
    _large_arrays.clear()


def large_array(root: Path, layout_index: int, codec: Blosc, zarr_format: int):
    """Built once per (layout, codec, format) and reused by later examples."""
    key = (layout_index, codec, zarr_format)
    if key not in _large_arrays:
        shape, chunks, dtype = LARGE_LAYOUTS[layout_index]
        encoding = {"name": "v2" if zarr_format == 2 else "default", "separator": "/"}
        spec = ArraySpec(zarr_format, shape, chunks, dtype, codec, 0, encoding)
        data = make_data(shape, dtype, seed=layout_index, mode="runs")
        noisy = make_data(shape, dtype, seed=layout_index + 1)
        # half low-entropy, half noise: compressed blocks and (often) memcpy'd blocks
        data.reshape(-1)[data.size // 2 :] = noisy.reshape(-1)[data.size // 2 :]
        path = root / f"large{len(_large_arrays)}.zarr"
        za = create_array(path, spec, data, missing=[(0,) * len(shape)][: layout_index % 2])
        _large_arrays[key] = (za, zarrcrop.open(path))
    return _large_arrays[key]


@pytest.mark.native
@given(data=st.data())
def test_large_chunk_crops_match_zarr(large_dir, data):
    layout_index = data.draw(st.sampled_from(range(len(LARGE_LAYOUTS))), label="layout")
    codec = data.draw(st.sampled_from(LARGE_CODECS), label="codec")
    zarr_format = data.draw(st.sampled_from([2, 3]), label="zarr_format")
    za, ca = large_array(large_dir, layout_index, codec, zarr_format)

    assert ca.native, ca.fallback_reason
    for _ in range(SELECTIONS_PER_ARRAY):
        sel = data.draw(basic_selections(za.shape), label="selection")
        assert_same(ca[sel], za[sel])
