"""Creating the dataset's arrays from their plans, or reopening them to resume a conversion.

An existing array is reused when its dtype, chunks and frame shape match the plan (only the
number of frames may differ: a generator's array grows); otherwise the conversion is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from .markers import clear_markers
from .meta import ATTR
from .planning import ArrayLayout, ArrayPlan
from .report import ArrayReport, CreateReport

__all__ = ["create_arrays", "require_array"]


def create_arrays(
    group: zarr.Group, root: str, plans: list[ArrayPlan], codec: Any, zarr_format: int
) -> tuple[CreateReport, bool]:
    """Create (or reopen) every planned array and level; a report of them, and whether any was
    created or resized (then a dataset finished before must be written again)."""
    report = CreateReport(root, zarr_format)
    changed = False
    for plan in plans:
        src = plan.source
        length = src.length if src.length is not None else 0
        extra: dict[str, Any] = {"source_dtype": str(src.dtype)}
        arr, new = require_array(group, root, plan, length, codec, extra)
        changed |= new
        report.arrays[plan.name] = _array_report(arr, plan, str(src.dtype))
        for level in plan.levels:
            lextra = {
                "scale": level.factor,
                "source": plan.name,
                "downscale": "area (mean of f x f blocks)",
            }
            larr, new = require_array(group, root, level, length, codec, lextra)
            changed |= new
            report.arrays[level.name] = _array_report(larr, level, str(plan.dtype))
            hh, ww = level.frame_shape[1:]
            group.require_group(level.name.rsplit("/", 1)[0]).attrs.update(
                {ATTR: {"scale": level.factor, "source": plan.name, "shape_hw": [hh, ww]}}
            )
    return report, changed


def require_array(
    group: zarr.Group,
    root: str,
    layout: ArrayLayout,
    length: int,
    codec: Any,
    extra: dict[str, Any],
) -> tuple[Any, bool]:
    """The array ``layout.name`` of ``length`` frames, reused or created; and whether it was
    created or resized. ``extra`` goes into its ``zarrcrop`` attribute."""
    shape = (length, *layout.frame_shape)
    existing = _existing(group, layout.name)
    if existing is None:
        return _create(group, root, layout, shape, codec, extra), True
    wanted = {
        "shape": list(shape),
        "dtype": str(np.dtype(layout.dtype)),
        "chunks": list(layout.chunks),
    }
    found = _spec_of(existing)
    found["shape"][0] = wanted["shape"][0]  # the number of frames may differ (a generator's)
    if found != wanted:
        raise FileExistsError(
            f"{root}: array {layout.name!r} exists with shape {tuple(existing.shape)}, dtype "
            f"{existing.dtype}, chunks {tuple(existing.chunks)}, but this conversion writes "
            f"shape {shape}, dtype {np.dtype(layout.dtype)}, chunks {layout.chunks}; pass "
            "overwrite=True to replace the dataset"
        )
    resized = bool(length) and existing.shape[0] != length
    if resized:
        existing.resize(shape)
    if extra:
        existing.attrs.update(extra)
    return existing, resized


def _create(
    group: zarr.Group,
    root: str,
    layout: ArrayLayout,
    shape: tuple[int, ...],
    codec: Any,
    extra: dict[str, Any],
) -> Any:
    """A new array for ``layout``; markers left by an earlier array of that name are dropped."""
    clear_markers(root, layout.name)
    kwargs: dict[str, Any] = {}
    if layout.shards is not None:
        kwargs["shards"] = layout.shards
    return group.create_array(
        layout.name,
        shape=shape,
        chunks=layout.chunks,
        dtype=layout.dtype,
        compressors=codec,
        fill_value=0,
        overwrite=True,
        attributes={ATTR: {"layout": "TCHW", **extra}},
        **kwargs,
    )


def _array_report(arr: Any, layout: ArrayLayout, source_dtype: str) -> ArrayReport:
    """The report entry of an array just created or reopened."""
    return ArrayReport(
        layout.name,
        tuple(arr.shape),
        str(arr.dtype),
        tuple(arr.chunks),
        layout.shards,
        source_dtype,
    )


def _existing(group: zarr.Group, name: str) -> Any:
    """The array ``name`` of ``group``, or None (absent, or a group)."""
    try:
        node = group[name]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Array) else None


def _spec_of(arr: Any) -> dict[str, Any]:
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), "chunks": list(arr.chunks)}
