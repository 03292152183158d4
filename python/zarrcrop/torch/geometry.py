"""Where the crops of a :class:`~zarrcrop.torch.CropDataset` lie: torch-free geometry.

Scales between aligned arrays of different resolutions, snapping of crop positions to whole
pixels of every array, the seeded draws of each sample's frame, position and flips, and the
``read_crops`` starts they give. Only NumPy is needed: this module imports without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsInt

import numpy as np

__all__ = ["CropGeometry", "SamplePlan", "apply_flips", "crop_size", "flip_span", "scale_ratio"]

#: Per axis (height, width): (numerator, denominator) of an array's size relative to the
#: reference's, one of them 1.
Scale = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class SamplePlan:
    """Where the samples of a batch of indices are read, in reference-array pixels.

    ``t``: first frame, ``y``/``x``: top-left corner in the reference array, ``hflip``/
    ``vflip``: whether the sample is flipped left-right / upside-down (all of shape (N,)).
    """

    t: np.ndarray
    y: np.ndarray
    x: np.ndarray
    hflip: np.ndarray
    vflip: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])


def crop_size(crop: int | np.integer[Any] | Sequence[SupportsInt]) -> tuple[int, int]:
    """``crop`` (``h`` or ``(h, w)``) as ``(h, w)``; ``ValueError`` unless two positive ints."""
    if isinstance(crop, (int, np.integer)):
        crop_hw = (int(crop), int(crop))
    else:
        sizes = tuple(int(n) for n in crop)
        if len(sizes) != 2:
            raise ValueError(f"crop must be an int or (h, w), got {crop!r}")
        crop_hw = (sizes[0], sizes[1])
    if min(crop_hw) < 1:
        raise ValueError(f"crop must be positive, got {crop_hw}")
    return crop_hw


def scale_ratio(name: str, axis: str, size: int, ref: int) -> tuple[int, int]:
    """(num, den) with size / ref == num / den and one of them 1, else ValueError."""
    if size >= ref and size % ref == 0:
        return size // ref, 1
    if size < ref and size > 0 and ref % size == 0:
        return 1, ref // size
    raise ValueError(
        f"the {axis} of array {name!r} ({size}) is not an integer multiple or fraction of the "
        f"reference's ({ref})"
    )


@dataclass(frozen=True)
class CropGeometry:
    """The crops of aligned (T, C, H, W) arrays: sizes, scales and where crops may start.

    Build it with :meth:`from_shapes`. The first array is the reference: crop sizes and
    positions are in its pixels and scale to every other array by the ratio of their (H, W).
    """

    names: tuple[str, ...]
    #: Crop (h, w) in reference pixels.
    crop: tuple[int, int]
    #: Consecutive frames per sample.
    frames: int
    #: Per array: its size relative to the reference's, per axis.
    scale: dict[str, Scale]
    #: Crop positions (y, x) in the reference are multiples of these, so that every array's
    #: crop starts on a whole pixel.
    snap: tuple[int, int]
    #: Number of snapped positions (y, x) where a crop fits in the reference.
    positions: tuple[int, int]
    #: Number of first frames where ``frames`` consecutive frames fit.
    t_positions: int
    #: Per array: the (k, C, h, w) crop shape given to ``read_crops``.
    crop_shapes: dict[str, tuple[int, int, int, int]]
    #: Non-overlapping crops in every window of ``frames`` frames (at least one per window).
    default_length: int

    @classmethod
    def from_shapes(
        cls, shapes: Mapping[str, Sequence[int]], crop: tuple[int, int], frames: int
    ) -> CropGeometry:
        """The geometry of crops ``crop`` (reference pixels) of ``frames`` frames of arrays of
        ``shapes`` (the first is the reference); ``ValueError`` when they do not align."""
        shapes = {name: tuple(int(n) for n in shape) for name, shape in shapes.items()}
        names = tuple(shapes)
        for name, shape in shapes.items():
            if len(shape) != 4:
                raise ValueError(f"array {name!r} must have 4 dimensions (T, C, H, W), got {shape}")
        ref_name = names[0]
        frames_total, _, ref_h, ref_w = shapes[ref_name]
        h, w = crop
        if h > ref_h or w > ref_w:
            raise ValueError(
                f"crop {crop} does not fit in the reference array {ref_name!r} "
                f"of shape {shapes[ref_name]}"
            )
        if frames > frames_total:
            raise ValueError(f"frames={frames} exceeds the {frames_total} frames of the data")
        scale: dict[str, Scale] = {}
        snap_y, snap_x = 1, 1
        for name, shape in shapes.items():
            if shape[0] != frames_total:
                raise ValueError(
                    f"array {name!r} has {shape[0]} frames but the reference {ref_name!r} has "
                    f"{frames_total}"
                )
            sy = scale_ratio(name, "height", shape[2], ref_h)
            sx = scale_ratio(name, "width", shape[3], ref_w)
            for (_num, den), size, axis in ((sy, h, "height"), (sx, w, "width")):
                if size % den:
                    raise ValueError(
                        f"crop {axis} {size} is not a multiple of {den}, the factor between "
                        f"the reference {ref_name!r} and {name!r}: the crop of {name!r} would "
                        "not be whole pixels"
                    )
            # A position that is a multiple of every downscale factor maps to whole pixels.
            snap_y = math.lcm(snap_y, sy[1])
            snap_x = math.lcm(snap_x, sx[1])
            scale[name] = (sy, sx)
        crop_shapes: dict[str, tuple[int, int, int, int]] = {}
        for name, shape in shapes.items():
            (ny, dy), (nx, dx) = scale[name]
            crop_shapes[name] = (frames, shape[1], h * ny // dy, w * nx // dx)
        t_positions = frames_total - frames + 1
        return cls(
            names=names,
            crop=(h, w),
            frames=frames,
            scale=scale,
            snap=(snap_y, snap_x),
            positions=((ref_h - h) // snap_y + 1, (ref_w - w) // snap_x + 1),
            t_positions=t_positions,
            crop_shapes=crop_shapes,
            default_length=t_positions * max(1, (ref_h // h) * (ref_w // w)),
        )

    def sample_plan(
        self, indices: Any, *, seed: int, epoch: int, length: int, flips: bool
    ) -> SamplePlan:
        """The frame, position and flips of samples ``indices`` (ints in ``[0, length)``).

        Sample ``i`` is drawn from ``np.random.default_rng([seed, epoch, i])``: the same
        (seed, epoch, i) always gives the same sample, whatever the other indices; ``flips``
        does not change the frames and positions drawn.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = idx.shape[0]
        t = np.empty(n, dtype=np.int64)
        y = np.empty(n, dtype=np.int64)
        x = np.empty(n, dtype=np.int64)
        hflip = np.zeros(n, dtype=bool)
        vflip = np.zeros(n, dtype=bool)
        ny, nx = self.positions
        for j, i in enumerate(idx.tolist()):
            if i < 0 or i >= length:
                raise IndexError(f"sample index {i} out of range for length {length}")
            rng = np.random.default_rng([seed, epoch, i])
            # The flips are drawn even when unused so that positions do not depend on them.
            draw = rng.integers(0, (self.t_positions, ny, nx, 2, 2))
            t[j], y[j], x[j] = draw[0], draw[1] * self.snap[0], draw[2] * self.snap[1]
            if flips:
                hflip[j], vflip[j] = bool(draw[3]), bool(draw[4])
        return SamplePlan(t=t, y=y, x=x, hflip=hflip, vflip=vflip)

    def plan_starts(self, plan: SamplePlan) -> dict[str, np.ndarray]:
        """Each array's ``read_crops`` starts (N, 4) int64 for ``plan``."""
        starts: dict[str, np.ndarray] = {}
        for name in self.names:
            (ny, dy), (nx, dx) = self.scale[name]
            s = np.zeros((len(plan), 4), dtype=np.int64)
            s[:, 0] = plan.t
            s[:, 2] = plan.y * ny // dy
            s[:, 3] = plan.x * nx // dx
            starts[name] = s
        return starts


def flip_span(start: int, size: int, reverse: bool) -> slice:
    """The slice of ``size`` elements from ``start``, backwards when ``reverse``."""
    if not reverse:
        return slice(start, start + size)
    return slice(start + size - 1, start - 1 if start > 0 else None, -1)


def apply_flips(batch: np.ndarray, plan: SamplePlan) -> None:
    """Flip the crops of ``batch`` (N, ..., h, w) in place as ``plan`` says (NumPy: torch
    cannot flip every dtype, e.g. uint16; NumPy handles the overlapping copy)."""
    for i in range(len(plan)):
        hflip, vflip = bool(plan.hflip[i]), bool(plan.vflip[i])
        if hflip or vflip:
            crop = batch[i]
            crop[...] = crop[..., :: -1 if vflip else 1, :: -1 if hflip else 1]
