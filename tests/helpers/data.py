"""Data makers: deterministic array contents, random crops and the NumPy reference of
``read_crops``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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


def random_crop(rng: np.random.Generator, shape: Sequence[int]) -> tuple[slice, ...]:
    """A random positive-step crop of ``shape`` (for the concurrency tests)."""
    sel = []
    for n in shape:
        start = int(rng.integers(0, n + 1))
        stop = int(rng.integers(start, n + 1))
        sel.append(slice(start, stop, int(rng.integers(1, 4))))
    return tuple(sel)


def expected_crops(data: np.ndarray, starts, shape, fill) -> np.ndarray:
    """What ``read_crops(starts, shape, boundary="fill", fill=fill)`` returns for an array
    holding ``data``: each crop cut from ``data``, ``fill`` where it reaches outside."""
    out = np.full((len(starts), *shape), fill, dtype=data.dtype)
    for i, start in enumerate(starts):
        src, dst = [], []
        for s, c, n in zip(start, shape, data.shape, strict=True):
            lo, hi = max(s, 0), min(s + c, n)
            if hi <= lo:
                break
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
        else:
            out[(i, *dst)] = data[tuple(src)]
    return out
