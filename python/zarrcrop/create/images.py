"""Image files as frames: collecting them, reading their headers, decoding them to (C, H, W).

PNG, JPEG and the other formats Pillow reads are decoded with Pillow, TIFF with tifffile; both
are optional dependencies (``pip install "zarrcrop[create]"``), imported on first use.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ImageFiles", "image_files", "read_image"]


@dataclass(frozen=True)
class ImageFiles:
    """A sorted list of image files of one size, read one frame at a time."""

    paths: tuple[str, ...]
    frame_shape: tuple[int, int, int]
    dtype: np.dtype[Any]
    #: The directory given as the source, if one was (create_dataset writes nothing inside it).
    folder: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, t: int) -> np.ndarray:
        """Decode frame ``t``; ``ValueError`` if its shape differs from the first file's."""
        data = read_image(self.paths[t])
        if data.shape != self.frame_shape:
            raise ValueError(
                f"{self.paths[t]}: decoded shape {data.shape} differs from {self.frame_shape}"
            )
        return data


def image_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> ImageFiles:
    """Collect image files from a glob pattern (or directory) or a list, sorted by name.

    Names are sorted naturally (``frame2`` before ``frame10``). All images must have the same
    size, channels and dtype; a mismatch raises ``ValueError`` naming the first odd file.
    """
    folder = None
    if isinstance(source, (str, os.PathLike)):
        pattern = os.fspath(source)
        if os.path.isdir(pattern):
            folder = pattern
            pattern = os.path.join(pattern, "*")
        paths = [p for p in glob.glob(pattern) if os.path.isfile(p)]
        if not paths:
            raise FileNotFoundError(f"no image files match {os.fspath(source)!r}")
    else:
        paths = [os.fspath(p) for p in source]
        if not paths:
            raise ValueError("the list of image files is empty")
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"no such image file: {p}")
    paths.sort(key=_natural_key)
    first_shape, first_dtype = _image_header(paths[0])
    for p in paths[1:]:
        shape, dtype = _image_header(p)
        if shape != first_shape or dtype != first_dtype:
            raise ValueError(
                f"mixed image sizes: {p} is {shape[2]}x{shape[1]} with {shape[0]} channel(s) "
                f"{dtype}, but {paths[0]} is {first_shape[2]}x{first_shape[1]} with "
                f"{first_shape[0]} channel(s) {first_dtype}"
            )
    return ImageFiles(tuple(paths), first_shape, first_dtype, folder)


def read_image(path: str) -> np.ndarray:
    """Decode an image file to a (C, H, W) array (RGB images: (3, H, W) uint8).

    A file that cannot be decoded (truncated, corrupt) raises ``OSError`` naming it.
    """
    reader = _import_reader(path)
    try:
        return _decode(reader, path)
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise many types; all mean this file is unreadable
        raise _image_error(path, exc) from exc


def _natural_key(path: str) -> list[Any]:
    """Sort key putting ``frame2`` before ``frame10``: digit runs compare as numbers."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", os.path.basename(path))]


def _is_tiff(path: str) -> bool:
    return path.lower().endswith((".tif", ".tiff"))


def _import_reader(path: str) -> Any:
    """The module that decodes ``path`` (tifffile for TIFF, else Pillow's Image), or an
    ImportError saying what to install."""
    try:
        if _is_tiff(path):
            import tifffile

            return tifffile
        from PIL import Image

        return Image
    except ImportError as exc:
        what = "tifffile" if _is_tiff(path) else "Pillow"
        raise ImportError(
            f"reading {path} needs {what}, which is not installed: "
            f'pip install "zarrcrop[create]" (or pip install {what})'
        ) from exc


def _image_header(path: str) -> tuple[tuple[int, int, int], np.dtype[Any]]:
    """(C, H, W) and dtype of an image file without decoding its pixels."""
    reader = _import_reader(path)
    try:
        if _is_tiff(path):
            with reader.TiffFile(path) as tif:
                page = tif.pages[0]
                shape, dtype = tuple(page.shape), np.dtype(page.dtype)
        else:
            with reader.open(path) as im:
                w, h = im.size
                mode = im.mode
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise many types; all mean this file is unreadable
        raise _image_error(path, exc) from exc
    if _is_tiff(path):
        return _tiff_frame_shape(path, shape), dtype
    return _pillow_frame_shape(mode, h, w)


def _tiff_frame_shape(path: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a TIFF page of ``shape``: (H, W), (H, W, C<=4) or (C, H, W)."""
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 3 and shape[-1] <= 4:
        return (shape[2], shape[0], shape[1])
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    raise ValueError(f"{path}: unsupported TIFF shape {shape}")


def _pillow_frame_shape(mode: str, h: int, w: int) -> tuple[tuple[int, int, int], np.dtype[Any]]:
    """(C, H, W) and dtype that :func:`_decode` gives for a Pillow image of ``mode``."""
    if mode in ("L", "1"):
        return (1, h, w), np.dtype(np.uint8)
    if mode.startswith("I;16"):
        return (1, h, w), np.dtype(np.uint16)
    if mode == "I":
        return (1, h, w), np.dtype(np.int32)
    if mode == "F":
        return (1, h, w), np.dtype(np.float32)
    if mode in ("RGBA", "LA", "PA"):
        return (4, h, w), np.dtype(np.uint8)
    return (3, h, w), np.dtype(np.uint8)


def _image_error(path: str, exc: BaseException) -> OSError:
    """An OSError naming the image file ``path`` that could not be read."""
    text = str(exc) or type(exc).__name__
    if path in text:
        return OSError(f"cannot read image: {text}")
    return OSError(f"cannot read image {path}: {text}")


def _decode(reader: Any, path: str) -> np.ndarray:
    """Decode ``path`` with ``reader`` (tifffile or Pillow's Image) to (C, H, W)."""
    if _is_tiff(path):
        data = np.asarray(reader.imread(path))
        if data.ndim == 2:
            return data[None]
        if data.ndim == 3 and data.shape[-1] <= 4:
            return np.ascontiguousarray(data.transpose(2, 0, 1))
        return data
    with reader.open(path) as opened:
        im: Any = opened
        # Modes numpy cannot take as they are become the nearest one _pillow_frame_shape names.
        if im.mode in ("LA", "PA"):
            im = im.convert("RGBA")
        elif im.mode == "1":
            im = im.convert("L")
        elif im.mode not in ("L", "RGB", "RGBA", "I", "F") and not im.mode.startswith("I;16"):
            im = im.convert("RGB")
        data = np.asarray(im)
    if data.ndim == 2:
        return data[None].copy()
    return np.ascontiguousarray(data.transpose(2, 0, 1))
