"""Hypothesis strategies: shapes and chunks, fill values, Blosc settings, whole array specs
and basic selections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .arrays import (
    BLOSC_CNAMES,
    BLOSC_SHUFFLES,
    DTYPES,
    V2_KEY_ENCODINGS,
    V3_KEY_ENCODINGS,
    ArraySpec,
    Blosc,
)

# Max extent per dimension and max number of chunks per dimension, by ndim: keeps arrays
# at <= ~20k elements and <= ~300 chunk files so examples stay fast.
_MAX_DIM = {1: 30, 2: 30, 3: 25, 4: 12, 5: 7}
_MAX_CHUNKS_PER_DIM = {1: 30, 2: 12, 3: 6, 4: 4, 5: 3}


def _uniform(lo: int, hi: int):
    """Integers in [lo, hi], drawn near-uniformly (``st.integers`` strongly favours ``lo``)."""
    return st.sampled_from(range(lo, hi + 1))


@st.composite
def shapes_and_chunks(draw, min_ndim: int = 1, max_ndim: int = 5):
    ndim = draw(_uniform(min_ndim, max_ndim))
    shape = [draw(_uniform(1, _MAX_DIM[ndim])) for _ in range(ndim)]
    if draw(st.sampled_from([False] * 9 + [True])):  # sometimes a zero-length dimension
        shape[draw(_uniform(0, ndim - 1))] = 0
    chunks = []
    for n in shape:
        lo = max(1, math.ceil(n / _MAX_CHUNKS_PER_DIM[ndim]))
        chunks.append(draw(_uniform(lo, max(lo, n + 2))))
    return tuple(shape), tuple(chunks)


def fill_values(dtype: str, allow_none: bool):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        values = [False, True]
    elif dt.kind == "i":
        info = np.iinfo(dt)
        values = [0, -1, 7, int(info.min), int(info.max)]
    elif dt.kind == "u":
        values = [0, 7, int(np.iinfo(dt).max)]
    elif dt.kind == "f":
        values = [0.0, float("nan"), float("inf"), float("-inf"), -0.0, 1.5]
    else:
        values = [0j, 1 + 2j, complex(-0.5, 3.0)]
    if allow_none:
        values = [*values, None]
    return st.sampled_from(values)


ALL_BLOSC = [
    Blosc(cname, clevel, shuffle)
    for cname in BLOSC_CNAMES
    for clevel in (0, 1, 5, 9)
    for shuffle in BLOSC_SHUFFLES
]
# one flat list so the choice is near-uniform; no compressor in ~1 of 6 cases
codecs = st.sampled_from([None] * 12 + ALL_BLOSC)


@st.composite
def array_specs(draw, zarr_format: int | None = None, layout: str = "native"):
    if zarr_format is None:
        zarr_format = draw(st.sampled_from([2, 3]))
    shape, chunks = draw(shapes_and_chunks())
    if layout == "v2-delta-filter":
        # Delta on bool/complex/float16 is not interesting; keep it to numbers it handles.
        dtype = draw(st.sampled_from(["int16", "int32", "uint8", "float32", "float64"]))
    elif layout in ("v2-big-endian", "v3-big-endian"):
        dtype = draw(st.sampled_from([d for d in DTYPES if np.dtype(d).itemsize > 1]))
    else:
        dtype = draw(st.sampled_from(DTYPES))
    fill_value = draw(fill_values(dtype, allow_none=zarr_format == 2))
    encodings = V2_KEY_ENCODINGS if zarr_format == 2 else V3_KEY_ENCODINGS
    return ArraySpec(
        zarr_format=zarr_format,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        codec=draw(codecs),
        fill_value=fill_value,
        key_encoding=draw(st.sampled_from(encodings)),
        layout=layout,
    )


@st.composite
def basic_selections(draw, shape: Sequence[int], negative_steps: bool = False):
    """A basic-indexing selection for ``shape``: ints (incl. negative), slices (negative
    bounds, steps > 1, optionally negative steps), Ellipsis, shortened tuples, ``()``."""
    ndim = len(shape)
    steps = [None, 1, 1, 2, 3, 5]
    if negative_steps:
        steps += [-1, -2, -3]
    items: list[Any] = []
    for n in shape:
        if n > 0 and draw(st.sampled_from(["int", "slice", "slice"])) == "int":
            items.append(draw(_uniform(-n, n - 1)))
            continue
        bound = st.sampled_from([None, None, *range(-n - 3, n + 4)])
        items.append(slice(draw(bound), draw(bound), draw(st.sampled_from(steps))))
    if negative_steps and not any(isinstance(s, slice) and (s.step or 1) < 0 for s in items):
        slice_positions = [i for i, s in enumerate(items) if isinstance(s, slice)]
        if slice_positions:
            i = draw(st.sampled_from(slice_positions))
            items[i] = slice(items[i].start, items[i].stop, draw(st.sampled_from([-1, -2, -3])))
        else:
            items[0] = slice(None, None, -1)
    form = draw(st.sampled_from(["full", "full", "short", "ellipsis", "bare"]))
    if form == "short":
        keep = draw(_uniform(0, ndim))
        if negative_steps:
            last_neg = max(
                i for i, s in enumerate(items) if isinstance(s, slice) and (s.step or 1) < 0
            )
            keep = max(keep, last_neg + 1)
        return tuple(items[:keep])
    if form == "ellipsis":
        start = draw(_uniform(0, ndim))
        stop = draw(_uniform(start, ndim))
        replaced = items[start:stop]
        if negative_steps and any(isinstance(s, slice) and (s.step or 1) < 0 for s in replaced):
            stop = start  # keep the negative step; Ellipsis then stands for nothing
        return (*items[:start], Ellipsis, *items[stop:])
    if form == "bare" and ndim == 1:
        return items[0]
    return tuple(items)
