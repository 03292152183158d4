"""Shared by the fuzz tests (tests/test_select_fuzz.py, tests/test_read_crops_fuzz.py): the
arrays they read, the exceptions a rejected argument may raise, and a call that records its
outcome instead of raising."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
import zarrcrop

# What a rejected argument may raise (OverflowError: Python ints past int64 / uint64).
CLEAN = (IndexError, ValueError, TypeError, OverflowError)

NP_INT_TYPES = [
    np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.intp,
]  # fmt: skip

#: The names of ``fuzz_arrays``' arrays.
ARRAY_NAMES = ["native-3d", "fallback-3d", "native-1d", "native-0d"]


def fuzz_arrays(base: Path) -> dict[str, tuple[zarrcrop.CropArray, zarr.Array, np.ndarray]]:
    """name -> (zarrcrop array, zarr-python array, full contents). Float data with NaNs and
    missing chunks (NaN fill), in native and fallback variants, plus 1-d and 0-d arrays."""
    rng = np.random.default_rng(7)
    data3 = rng.normal(size=(6, 7, 5))
    data3[rng.random(data3.shape) < 0.1] = np.nan
    data3[0, 0, 0] = -0.0
    blosc = numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)
    out: dict[str, tuple[zarrcrop.CropArray, zarr.Array, np.ndarray]] = {}
    variants: dict[str, dict[str, Any]] = {
        "native-3d": {"compressors": blosc},
        "fallback-3d": {"compressors": blosc, "filters": [numcodecs.Delta(dtype="<f8")]},
    }
    for name, kwargs in variants.items():
        za = zarr.create_array(
            store=str(base / f"{name}.zarr"), shape=data3.shape, chunks=(4, 3, 2), dtype="<f8",
            zarr_format=2, fill_value=np.nan, **kwargs,
        )  # fmt: skip
        za[...] = data3
        (base / f"{name}.zarr" / "1.1.1").unlink()  # a missing chunk: NaN fill
        ca = zarrcrop.open(base / f"{name}.zarr")
        assert ca.native == name.startswith("native"), ca.fallback_reason
        out[name] = (ca, za, np.asarray(za[...]))
    za = zarr.create_array(
        store=str(base / "1d.zarr"), shape=(11,), chunks=(4,), dtype="int16", zarr_format=3,
        fill_value=-3,
    )  # fmt: skip
    za[:9] = np.arange(9, dtype=np.int16) * 7 - 20
    out["native-1d"] = (zarrcrop.open(base / "1d.zarr"), za, np.asarray(za[...]))
    za = zarr.create_array(
        store=str(base / "0d.zarr"), shape=(), chunks=(), dtype="float32", zarr_format=2,
        fill_value=0, compressors=blosc,
    )  # fmt: skip
    za[...] = 2.5
    out["native-0d"] = (zarrcrop.open(base / "0d.zarr"), za, np.asarray(za[...]))
    return out


def attempt(fn: Any) -> tuple[str, Any]:
    """("ok", what ``fn()`` returned) or ("error", the exception it raised); warnings ignored."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "ok", fn()
    except Exception as exc:
        return "error", exc
