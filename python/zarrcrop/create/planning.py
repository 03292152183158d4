"""Planning: what each array of a new dataset will be, decided before anything is written.

For each input array: its stored dtype (and whether that conversion is lossy), its chunk and
shard shapes, and the derived resolution levels made from it. ``create_dataset``'s options are
checked here too, so bad arguments are refused before the dataset's directory is touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .levels import level_hw, level_name
from .sources import FrameSource

__all__ = [
    "DEFAULT_CROP_SIZE",
    "ArrayLayout",
    "ArrayPlan",
    "LevelPlan",
    "Options",
    "check_options",
    "chunk_shape",
    "plan_arrays",
    "stored_dtype",
]

#: Default crop size (the tutorial's 960x960 crops); chunks are at most this in H and W.
DEFAULT_CROP_SIZE = 960


@dataclass
class ArrayLayout:
    """Name and on-disk layout of one array to write (frames are (C, H, W))."""

    name: str
    frame_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None


@dataclass
class LevelPlan(ArrayLayout):
    """A derived level: the source array's frames downscaled by ``factor``."""

    factor: int


@dataclass
class ArrayPlan(ArrayLayout):
    """One input array to write: its layout, where its frames come from, its derived levels."""

    source: FrameSource
    lossy: bool
    levels: list[LevelPlan] = field(default_factory=list)

    @property
    def derived(self) -> list[tuple[str, int]]:
        """(level array name, factor) per derived level, as the unit writer takes them."""
        return [(level.name, level.factor) for level in self.levels]

    @property
    def array_names(self) -> list[str]:
        """This array's name and its levels' names."""
        return [self.name, *(level.name for level in self.levels)]


class Options(NamedTuple):
    """``create_dataset``'s options after checking: crop side, dtypes by name, level factors."""

    crop: int
    dtypes: dict[str, Any]
    levels: tuple[int, ...]


def check_options(
    arrays: Mapping[str, Any],
    *,
    wait: Any,
    zarr_format: int,
    shards: int | None,
    crop_size: int | None,
    dtypes: Mapping[str, Any] | None,
    levels: Sequence[int] | None,
    level_source: str,
    blocksize: int | None,
) -> Options:
    """Check ``create_dataset``'s options (ValueError naming the bad one); the normalized ones."""
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
        raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if shards is not None:
        if zarr_format != 3:
            raise ValueError("sharding needs zarr_format=3")
        if int(shards) < 1:
            raise ValueError(f"shards must be a positive number of frames, got {shards}")
    crop = int(crop_size) if crop_size is not None else DEFAULT_CROP_SIZE
    if crop < 1:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    if not arrays:
        raise ValueError("no arrays to write")
    by_name = dict(dtypes or {})
    unknown = set(by_name) - set(arrays)
    if unknown:
        raise ValueError(f"dtypes names unknown arrays: {sorted(unknown)}")
    factors = tuple(int(f) for f in (levels or ()))
    if any(f < 2 for f in factors):
        raise ValueError(f"levels are downscale factors >= 2, got {factors}")
    if factors and level_source not in arrays:
        raise ValueError(f"levels need an array {level_source!r} to downscale")
    if blocksize is not None and (
        isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 0
    ):
        raise ValueError(
            f"blocksize must be a number of bytes >= 0 (0: Blosc's), got {blocksize!r}"
        )
    return Options(crop, by_name, factors)


def plan_arrays(
    arrays: Mapping[str, Any],
    options: Options,
    *,
    shards: int | None,
    level_source: str,
    lossless: bool,
) -> list[ArrayPlan]:
    """One plan per entry of ``arrays`` (name to data), with the levels of ``level_source``.

    Raises ValueError for a bad name, a refused dtype conversion or an impossible level.
    """
    plans = []
    for given_name, value in arrays.items():
        plan = _plan_array(given_name, value, options, shards, lossless)
        if plan.name == level_source:
            plan.levels = _plan_levels(plan, options, shards)
        plans.append(plan)
    _refuse_level_name_clashes(plans)
    return plans


def chunk_shape(frame_shape: Sequence[int], crop_size: int) -> tuple[int, ...]:
    """One frame per chunk, at most ``crop_size`` in H and W: (1, C, min(crop, H), min(crop, W))."""
    c, h, w = frame_shape
    return (1, c, min(crop_size, h), min(crop_size, w))


def stored_dtype(name: str, src: np.dtype[Any], target: Any, lossless: bool) -> np.dtype[Any]:
    """The dtype to store ``name`` in (``target``, or ``src`` when None); ValueError when the
    conversion is lossy and ``lossless`` was asked for."""
    dst = np.dtype(target) if target is not None else src
    if dst == src or np.can_cast(src, dst, "safe"):
        return dst
    if lossless:
        raise ValueError(
            f"{name}: storing {src} as {dst} is lossy and lossless=True was given "
            "(drop lossless=True to convert and get the largest error reported)"
        )
    return dst


def _plan_array(
    given_name: str, value: Any, options: Options, shards: int | None, lossless: bool
) -> ArrayPlan:
    """The plan of one input array, without levels."""
    name = str(given_name).strip("/")
    if not name or any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(
            f"array name {given_name!r} is not a path inside the dataset (like 'gt' or "
            "'lr/720p/rgb'; no empty, '.' or '..' parts)"
        )
    src = FrameSource(name, value)
    dtype = stored_dtype(name, src.dtype, options.dtypes.get(name), lossless)
    lossy = dtype != src.dtype and not np.can_cast(src.dtype, dtype, "safe")
    chunks = chunk_shape(src.frame_shape, options.crop)
    shard_shape = None
    if shards is not None:
        # Whole frames per shard: a shard row spans the frame, padded to whole chunks.
        shard_shape = (int(shards), *chunks[1:2], *_whole_chunks(src.frame_shape[1:], chunks[2:]))
    return ArrayPlan(name, src.frame_shape, dtype, chunks, shard_shape, src, lossy)


def _plan_levels(plan: ArrayPlan, options: Options, shards: int | None) -> list[LevelPlan]:
    """The derived levels of ``plan``'s array, one per downscale factor."""
    c, h, w = plan.frame_shape
    levels = []
    for f in options.levels:
        hh, ww = level_hw(h, w, f)
        if hh < 1 or ww < 1:
            raise ValueError(f"level {f} of {h}x{w} frames is empty")
        # Chunks a factor smaller too, so a crop of a level covers as many chunks as at full size.
        chunks = chunk_shape((c, hh, ww), max(1, math.ceil(options.crop / f)))
        shard = None if shards is None else (int(shards), c, *_whole_chunks((hh, ww), chunks[2:]))
        levels.append(LevelPlan(level_name(hh), (c, hh, ww), plan.dtype, chunks, shard, f))
    return levels


def _refuse_level_name_clashes(plans: list[ArrayPlan]) -> None:
    """Refuse two levels of different factors with one name (tiny frames: both heights round
    to the same), or a level named like a given array."""
    given = {plan.name for plan in plans}
    for plan in plans:
        factor_of: dict[str, int] = {}
        for level in plan.levels:
            if level.name in given:
                raise ValueError(
                    f"level {level.factor} of {plan.name!r} would be written to {level.name!r}, "
                    "which is also an array given to write; rename that array"
                )
            other = factor_of.setdefault(level.name, level.factor)
            if other != level.factor:
                raise ValueError(
                    f"levels {other} and {level.factor} of {plan.name!r} would both be written "
                    f"to {level.name!r} (frames {plan.frame_shape[1]} high); drop one"
                )


def _whole_chunks(hw: Sequence[int], chunk_hw: Sequence[int]) -> tuple[int, ...]:
    """``hw`` rounded up to whole chunks of ``chunk_hw``."""
    return tuple(math.ceil(n / c) * c for n, c in zip(hw, chunk_hw, strict=True))
