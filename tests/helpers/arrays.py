"""Shared helpers for the zarrcrop test suite: array builders, strategies and comparisons."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
import zarr.codecs
from hypothesis import strategies as st

# --------------------------------------------------------------------------------------
# Configuration space
# --------------------------------------------------------------------------------------

DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]

BLOSC_CNAMES = ["lz4", "lz4hc", "blosclz", "zstd", "zlib"]
BLOSC_SHUFFLES = ["noshuffle", "shuffle", "bitshuffle"]
_NUMCODECS_SHUFFLE = {
    "noshuffle": numcodecs.Blosc.NOSHUFFLE,
    "shuffle": numcodecs.Blosc.SHUFFLE,
    "bitshuffle": numcodecs.Blosc.BITSHUFFLE,
}

# chunk_key_encoding values accepted by zarr.create_array
V2_KEY_ENCODINGS = [
    {"name": "v2", "separator": "."},
    {"name": "v2", "separator": "/"},
]
V3_KEY_ENCODINGS = [
    {"name": "default", "separator": "/"},
    {"name": "default", "separator": "."},
    {"name": "v2", "separator": "."},
    {"name": "v2", "separator": "/"},
]

# Layouts besides the plain one ("native": blosc or no compressor, C order, little endian).
# Those in NATIVE_LAYOUTS are read natively too; the rest fall back to zarr-python. All must
# give results equal to zarr-python's.
NATIVE_LAYOUTS = [
    "v2-order-F",
    "v2-big-endian",
    "v2-numcodecs-zstd",
    "v3-default-codecs",
    "v3-big-endian",
    "v3-zstd-crc32c",
    "v3-blosc-crc32c",
    "v3-sharding",
    "v2-numcodecs-gzip",
    "v3-gzip",
]
FALLBACK_LAYOUTS = [
    "v2-delta-filter",
    "v2-numcodecs-lz4",
    "v3-transpose",
]


@dataclass(frozen=True)
class Blosc:
    cname: str
    clevel: int
    shuffle: str  # one of BLOSC_SHUFFLES

    def __str__(self) -> str:
        return f"blosc-{self.cname}-{self.clevel}-{self.shuffle}"


@dataclass(frozen=True)
class ArraySpec:
    """Everything needed to create one on-disk zarr array."""

    zarr_format: int
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    codec: Blosc | None = None
    fill_value: Any = 0
    key_encoding: dict = field(default_factory=lambda: {"name": "v2", "separator": "."})
    layout: str = "native"  # "native", or one of NATIVE_LAYOUTS or FALLBACK_LAYOUTS

    @property
    def native(self) -> bool:
        return self.layout == "native" or self.layout in NATIVE_LAYOUTS


def _zarr_create_kwargs(spec: ArraySpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "shape": spec.shape,
        "chunks": spec.chunks,
        "dtype": spec.dtype,
        "zarr_format": spec.zarr_format,
        "fill_value": spec.fill_value,
        "chunk_key_encoding": spec.key_encoding,
    }
    layout = spec.layout
    if spec.zarr_format == 2:
        kwargs["filters"] = None
        if spec.codec is None:
            kwargs["compressors"] = None
        else:
            kwargs["compressors"] = numcodecs.Blosc(
                cname=spec.codec.cname,
                clevel=spec.codec.clevel,
                shuffle=_NUMCODECS_SHUFFLE[spec.codec.shuffle],
            )
        if layout == "v2-delta-filter":
            kwargs["filters"] = [numcodecs.Delta(dtype=spec.dtype)]
        elif layout == "v2-order-F":
            kwargs["order"] = "F"
        elif layout == "v2-big-endian":
            kwargs["dtype"] = np.dtype(spec.dtype).newbyteorder(">")
        elif layout == "v2-numcodecs-zstd":
            kwargs["compressors"] = numcodecs.Zstd(level=3)
        elif layout == "v2-numcodecs-gzip":
            kwargs["compressors"] = numcodecs.GZip(level=1)
        elif layout == "v2-numcodecs-lz4":
            kwargs["compressors"] = numcodecs.LZ4()
        else:
            assert layout == "native", layout
    else:
        kwargs["filters"] = None
        kwargs["serializer"] = zarr.codecs.BytesCodec()
        if spec.codec is None:
            kwargs["compressors"] = None
        else:
            kwargs["compressors"] = zarr.codecs.BloscCodec(
                cname=spec.codec.cname, clevel=spec.codec.clevel, shuffle=spec.codec.shuffle
            )
        if layout == "v3-default-codecs":
            del kwargs["filters"], kwargs["serializer"], kwargs["compressors"]
        elif layout == "v3-big-endian":
            kwargs["serializer"] = zarr.codecs.BytesCodec(endian="big")
        elif layout == "v3-zstd-crc32c":
            kwargs["compressors"] = [zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec()]
        elif layout == "v3-blosc-crc32c":
            blosc = kwargs["compressors"] or zarr.codecs.BloscCodec(cname="lz4", clevel=5)
            kwargs["compressors"] = [blosc, zarr.codecs.Crc32cCodec()]
        elif layout == "v3-gzip":
            kwargs["compressors"] = zarr.codecs.GzipCodec(level=1)
        elif layout == "v3-transpose":
            kwargs["filters"] = [
                zarr.codecs.TransposeCodec(order=tuple(range(len(spec.shape)))[::-1])
            ]
        elif layout == "v3-sharding":
            kwargs["shards"] = tuple(2 * c for c in spec.chunks)
        else:
            assert layout == "native", layout
    return kwargs


def create_array(
    path: Path | str,
    spec: ArraySpec,
    data: np.ndarray | None = None,
    missing: Sequence[tuple[int, ...]] = (),
) -> zarr.Array:
    """Create ``spec`` at ``path``, write ``data`` and delete the chunk files in ``missing``.

    zarr-python itself also skips chunks that are entirely ``fill_value``.
    """
    z = zarr.create_array(store=str(path), **_zarr_create_kwargs(spec))
    if data is not None:
        z[...] = data
    for coords in missing:
        chunk_file = Path(path) / z.metadata.encode_chunk_key(tuple(coords))
        if chunk_file.is_file():
            chunk_file.unlink()
    return z


def chunk_grid(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))


def all_chunk_coords(shape: Sequence[int], chunks: Sequence[int]) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in c) for c in np.ndindex(*chunk_grid(shape, chunks))]


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def _float_specials(dtype: np.dtype) -> np.ndarray:
    return np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0], dtype=dtype)


def make_data(shape: Sequence[int], dtype: str | np.dtype, seed: int, mode: str = "random"):
    """Deterministic test data.

    ``mode="random"`` gives high-entropy values (Blosc usually stores them memcpy'd),
    ``mode="runs"`` gives low-entropy data that really gets compressed.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    n = math.prod(shape)
    if mode == "runs":
        base = (np.arange(n) // max(1, int(rng.integers(1, 9)))) % 97
        if dtype.kind == "b":
            return (base % 2 == 1).reshape(shape)
        if dtype.kind == "c":
            return (base + 1j * (base % 5)).astype(dtype).reshape(shape)
        return base.astype(dtype).reshape(shape)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "f":
        values = (rng.standard_normal(size=shape) * 1000).astype(dtype)
        if n:
            flat = values.reshape(-1)
            idx = rng.integers(0, n, size=max(1, n // 10))
            flat[idx] = rng.choice(_float_specials(dtype), size=idx.size)
        return values
    if dtype.kind == "c":
        part = np.dtype(f"f{dtype.itemsize // 2}")
        real = make_data(shape, part, seed, mode)
        imag = make_data(shape, part, seed + 1, mode)
        out = np.empty(shape, dtype=dtype)
        out.real = real
        out.imag = imag
        return out
    raise AssertionError(f"unsupported dtype {dtype}")


# --------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------

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


def random_crop(rng: np.random.Generator, shape: Sequence[int]) -> tuple[slice, ...]:
    """A random positive-step crop of ``shape`` (for the concurrency tests)."""
    sel = []
    for n in shape:
        start = int(rng.integers(0, n + 1))
        stop = int(rng.integers(start, n + 1))
        sel.append(slice(start, stop, int(rng.integers(1, 4))))
    return tuple(sel)


# --------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------

#: For tests that measure RSS growth: Linux only, and not under ASan, whose quarantine holds
#: freed memory so RSS grows by design.
rss_check = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm") or "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="needs /proc (Linux) and no ASan (its quarantine holds freed memory)",
)


def rss_bytes() -> int:
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
