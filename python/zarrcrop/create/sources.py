"""Frame sources: what ``create_dataset`` accepts for one array, read one frame at a time.

A source is a numpy array (T, C, H, W) or (T, H, W), an iterable of (C, H, W) or (H, W) frames
(a generator's length is unknown until it ends), or image files (:mod:`.images`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from .images import ImageFiles, image_files

__all__ = ["Frame", "FrameSource"]

#: A frame, or a callable that returns it (image files: decoded by the worker that writes it).
Frame = np.ndarray | Callable[[], np.ndarray]


class FrameSource:
    """One input array: its frame shape, dtype, length (None: unknown) and frames."""

    frame_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    length: int | None

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.images: ImageFiles | None = None
        self.array: np.ndarray | None = None
        self._iter: Iterator[Any] | None = None
        self._peeked: np.ndarray | None = None
        if isinstance(value, ImageFiles):
            self.images = value
        elif _looks_like_images(value):
            self.images = image_files(value)
        elif isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
            self.array = _as_frames(name, value)
        elif isinstance(value, Iterable):
            self._start_iterating(value)
        else:
            raise TypeError(
                f"{name}: expected a numpy array, an iterable of frames, or image files "
                f"(a glob or a list of paths), got {type(value).__name__}"
            )
        self._describe()
        if self.length == 0:
            raise ValueError(f"{name}: no frames")

    def _start_iterating(self, value: Iterable[Any]) -> None:
        """Take the first frame of an iterable now: it gives the frame shape and dtype."""
        self._length = len(value) if isinstance(value, Sized) else None
        self._iter = iter(value)
        try:
            first = next(self._iter)
        except StopIteration:
            raise ValueError(f"{self.name}: no frames") from None
        self._peeked = _as_frame(self.name, first)

    def _describe(self) -> None:
        """Set frame_shape, dtype and length from whichever input this source holds."""
        if self.images is not None:
            self.frame_shape = self.images.frame_shape
            self.dtype = self.images.dtype
            self.length = len(self.images)
        elif self.array is not None:
            self.frame_shape = tuple(self.array.shape[1:])
            self.dtype = self.array.dtype
            self.length = int(self.array.shape[0])
        else:
            assert self._peeked is not None
            self.frame_shape = tuple(self._peeked.shape)
            self.dtype = self._peeked.dtype
            self.length = self._length

    def frames(self) -> Iterator[tuple[int, Frame]]:
        """(t, frame or a callable returning it). Callables defer decoding to the workers."""
        if self.images is not None:
            images = self.images
            for t in range(len(images)):
                yield t, _ImageFrame(images, t)
        elif self.array is not None:
            for t in range(self.array.shape[0]):
                yield t, self.array[t]
        else:
            assert self._iter is not None and self._peeked is not None
            yield 0, self._peeked
            self._peeked = None
            for t, frame in enumerate(self._iter, start=1):
                checked = _as_frame(self.name, frame)
                if checked.shape != self.frame_shape:
                    raise ValueError(
                        f"{self.name}: frame {t} has shape {checked.shape}, "
                        f"frame 0 has {self.frame_shape}"
                    )
                yield t, checked


@dataclass(frozen=True)
class _ImageFrame:
    """Frame ``t`` of image files, decoded when called (picklable, for Dask workers)."""

    images: ImageFiles
    t: int

    def __call__(self) -> np.ndarray:
        return self.images.frame(self.t)


def _looks_like_images(value: Any) -> bool:
    """A path, a glob pattern or a non-empty list of paths."""
    if isinstance(value, (str, os.PathLike)):
        return True
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, (str, os.PathLike)) for v in value)
    )


def _as_frames(name: str, value: Any) -> np.ndarray:
    """A whole array as (T, C, H, W); (T, H, W) gets C = 1."""
    arr = np.asarray(value)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{name}: arrays must be (T, C, H, W) or (T, H, W), got {arr.shape}")
    return arr


def _as_frame(name: str, frame: Any) -> np.ndarray:
    """One frame as (C, H, W); (H, W) gets C = 1."""
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name}: frames must be (C, H, W) or (H, W), got shape {arr.shape}")
    return arr
