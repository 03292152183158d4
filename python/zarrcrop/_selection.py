"""Normalization of basic (slice/int/Ellipsis) selections into per-dimension strides.

A basic selection becomes, for every array dimension, ``(start, step, count)``: output index
``i`` reads array index ``start + i * step``. Dimensions indexed by an integer keep a count of
1 in the native read and are dropped from the result shape afterwards (dropping extent-1
dimensions never changes the memory layout, so the native output buffer is the result).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

__all__ = ["BasicSelection", "NotBasicSelection", "normalize_selection"]


class NotBasicSelection(Exception):
    """Raised for selections that are not basic (fancy, boolean, newaxis, ...)."""


@dataclass(frozen=True)
class BasicSelection:
    starts: tuple[int, ...]
    steps: tuple[int, ...]
    counts: tuple[int, ...]
    dropped: tuple[bool, ...]  # True where the dimension was indexed by an integer
    ellipsis: bool = False  # the selection contained `...`

    @property
    def full_shape(self) -> tuple[int, ...]:
        return self.counts

    @property
    def result_shape(self) -> tuple[int, ...]:
        return tuple(c for c, d in zip(self.counts, self.dropped, strict=True) if not d)

    @property
    def has_negative_step(self) -> bool:
        return any(s < 0 for s in self.steps)


def _as_int(item: object) -> int | None:
    if isinstance(item, (bool, np.bool_)):
        return None
    if isinstance(item, (int, np.integer)):
        return operator.index(item)
    return None


def normalize_selection(selection: object, shape: tuple[int, ...]) -> BasicSelection:
    """Normalize ``selection`` against ``shape``.

    Raises IndexError (out-of-range integer, too many indices, several Ellipsis), ValueError
    (slice step zero) or NotBasicSelection (anything that is not basic indexing).
    """
    items = selection if isinstance(selection, tuple) else (selection,)
    for item in items:
        if item is not Ellipsis and not isinstance(item, slice) and _as_int(item) is None:
            raise NotBasicSelection(type(item).__name__)
    n_ellipsis = sum(1 for item in items if item is Ellipsis)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    ndim = len(shape)
    n_real = len(items) - n_ellipsis
    if n_real > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {n_real} were indexed"
        )
    if n_ellipsis:
        at = next(i for i, item in enumerate(items) if item is Ellipsis)
        items = items[:at] + (slice(None),) * (ndim - n_real) + items[at + 1 :]
    else:
        items = items + (slice(None),) * (ndim - n_real)

    starts: list[int] = []
    steps: list[int] = []
    counts: list[int] = []
    dropped: list[bool] = []
    for dim, (item, extent) in enumerate(zip(items, shape, strict=True)):
        if isinstance(item, slice):
            if item.step is not None and operator.index(item.step) == 0:
                raise ValueError("slice step cannot be zero")
            start, stop, step = item.indices(extent)
            count = len(range(start, stop, step))
            starts.append(start if count else 0)
            # With at most one element the step is irrelevant; normalizing it keeps huge
            # steps (>= 2**63) within the native reader's int64 range.
            steps.append(step if count > 1 else 1)
            counts.append(count)
            dropped.append(False)
        else:
            index = operator.index(item)
            if not -extent <= index < extent:
                raise IndexError(
                    f"index {index} is out of bounds for axis {dim} with size {extent}"
                )
            starts.append(index % extent)
            steps.append(1)
            counts.append(1)
            dropped.append(True)
    return BasicSelection(
        tuple(starts), tuple(steps), tuple(counts), tuple(dropped), ellipsis=n_ellipsis > 0
    )


def positive_step_equivalent(sel: BasicSelection) -> tuple[tuple[object, ...], tuple[int, ...]]:
    """A zarr-python compatible selection (steps >= 1) plus the result axes to flip.

    zarr-python rejects negative steps; reading the same elements in increasing order and
    flipping those axes gives NumPy's answer.
    """
    items: list[object] = []
    flip: list[int] = []
    axis = 0
    for start, step, count, drop in zip(
        sel.starts, sel.steps, sel.counts, sel.dropped, strict=True
    ):
        if drop:
            items.append(start)
            continue
        if step < 0 and count > 0:
            first = start + (count - 1) * step
            items.append(slice(first, start + 1, -step))
            flip.append(axis)
        elif count == 0:
            items.append(slice(0, 0, 1))
        else:
            items.append(slice(start, start + (count - 1) * step + 1, step))
        axis += 1
    return tuple(items), tuple(flip)
