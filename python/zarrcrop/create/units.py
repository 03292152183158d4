"""Units of work: one frame (or one shard of frames), written, read back, then marked done.

:func:`write_unit` runs in a writer thread or on a Dask worker: it takes plain arguments and
opens the arrays by path, so it can be shipped to another process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr
import zarr.storage

from ..array import CropArray
from ..errors import WriteCheckError
from .levels import downscale_area
from .markers import mark_done
from .planning import ArrayPlan
from .sources import Frame

__all__ = ["iter_units", "max_abs_error", "write_unit"]


def iter_units(plan: ArrayPlan) -> Iterator[tuple[int, int, list[Frame]]]:
    """(unit index, first frame, frames) per unit of work: one frame, or one shard of frames."""
    per = plan.shards[0] if plan.shards is not None else 1
    batch: list[Frame] = []
    t0 = 0
    for t, frame in plan.source.frames():
        if not batch:
            t0 = t
        batch.append(frame)
        if len(batch) == per:
            yield t0 // per, t0, batch
            batch = []
    if batch:
        yield t0 // per, t0, batch


def write_unit(
    root: str,
    name: str,
    t0: int,
    frames: list[Frame],
    dtype: str,
    lossy: bool,
    derived: list[tuple[str, int]],
    unit: int,
) -> float | None:
    """Write frames t0.. of array ``name`` (and its derived levels), then mark ``unit`` done.

    Runs in a thread or on a Dask worker (it opens the arrays by path). Returns the largest
    absolute conversion error when the dtype conversion is lossy.
    """
    data = [f() if callable(f) else np.asarray(f) for f in frames]
    block = np.stack(data) if len(data) > 1 else data[0][None]
    stored = block.astype(dtype, copy=False)
    err = max_abs_error(block, stored) if lossy else None
    store = zarr.storage.LocalStore(root)
    zarr.open_array(store=store, path=name, mode="r+")[t0 : t0 + len(data)] = stored
    written = [(name, stored)]
    for level_name, factor in derived:
        small = np.stack([downscale_area(f, factor) for f in stored])
        zarr.open_array(store=store, path=level_name, mode="r+")[t0 : t0 + len(data)] = small
        written.append((level_name, small))
    for array_name, expected in written:
        _check_written(store, root, array_name, t0, expected)
    mark_done(root, name, unit, err)
    return err


def max_abs_error(original: np.ndarray, stored: np.ndarray) -> float:
    """Largest absolute difference between ``original`` and its converted copy ``stored``.

    NaN stored as NaN counts as exact; any other NaN difference (a NaN appearing or vanishing,
    infinity minus infinity) counts as infinite.
    """
    a = original.astype(np.float64)
    b = stored.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


def _check_written(
    store: zarr.storage.LocalStore, root: str, name: str, t0: int, expected: np.ndarray
) -> None:
    """Read frames t0.. of ``name`` back from disk; raise WriteCheckError unless they are there.

    zarr-python silently drops writes outside an array's shape, so a shape changed under this
    writer would otherwise leave fill values in frames marked done.
    """
    arr: Any = zarr.open_array(store=store, path=name, mode="r")  # the shape on disk now
    stop = t0 + len(expected)
    where = f"{root}: frames {t0}..{stop - 1} of {name!r}"
    hint = "another process writing the dataset? they are not marked done; run again to resume"
    if arr.shape[0] < stop or tuple(arr.shape[1:]) != tuple(expected.shape[1:]):
        raise WriteCheckError(
            f"{where} are outside the array's shape {tuple(arr.shape)} after writing ({hint})"
        )
    back = CropArray(arr, strict=False)[t0:stop]
    if not np.array_equal(back, expected, equal_nan=np.issubdtype(expected.dtype, np.inexact)):
        raise WriteCheckError(f"{where} read back different from what was written ({hint})")
