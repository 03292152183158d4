"""Derived resolution levels: their names and shapes, and the area downscaling that makes them.

``create_dataset(levels=(f, ...))`` writes, for each factor ``f``, an array ``lr/{H}p/rgb`` with
frames ``f`` times smaller than the level source's, named by their height as the tutorial names
its resolutions (2160x3840 frames with factor 3 give ``lr/720p/rgb``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["downscale_area", "level_hw", "level_name"]


def level_hw(h: int, w: int, factor: int) -> tuple[int, int]:
    """Height and width of frames of ``h`` x ``w`` downscaled by ``factor`` (rounded down)."""
    return h // factor, w // factor


def level_name(height: int) -> str:
    """The array name of a derived level of frames ``height`` pixels tall: ``lr/{height}p/rgb``."""
    return f"lr/{height}p/rgb"


def downscale_area(frame: np.ndarray, factor: int) -> np.ndarray:
    """Area downscaling of a (C, H, W) frame: the mean over ``factor x factor`` blocks.

    H and W are cropped to multiples of ``factor``; integer results are rounded to nearest.
    """
    c, h, w = frame.shape
    hh, ww = level_hw(h, w, factor)
    blocks = frame[:, : hh * factor, : ww * factor].reshape(c, hh, factor, ww, factor)
    mean = blocks.mean(axis=(2, 4), dtype=np.float64)
    if np.issubdtype(frame.dtype, np.integer):
        info = np.iinfo(frame.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    small: np.ndarray = mean.astype(frame.dtype)
    return small
