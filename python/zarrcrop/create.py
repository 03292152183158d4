"""Dataset creation: ``zarrcrop.create_dataset`` lays arrays out so that crops read fast.

Layout (see docs "Creating datasets"): arrays are (T, C, H, W), one frame per chunk, chunks of
about the crop size in H and W, Blosc with a block size small enough that a crop decodes only
the blocks it needs. Frames are written in parallel (threads, or Dask tasks with ``client=``),
and each finished unit of work leaves a marker file so an interrupted conversion resumes where
it stopped. A lock file in the dataset (``fcntl.flock``, dropped by the kernel when its holder
dies) keeps a second conversion of the same path from writing at the same time.
"""

from __future__ import annotations

import glob as _glob
import math
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numcodecs
import numpy as np
import zarr

from .errors import DatasetLockedError, WriteCheckError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no locking
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ArrayReport",
    "CreateReport",
    "DatasetLockedError",
    "ImageFiles",
    "WriteCheckError",
    "compressor_preset",
    "create_dataset",
    "downscale_area",
    "image_files",
]

#: Default crop size (the tutorial's 960x960 crops); chunks are at most this in H and W.
DEFAULT_CROP_SIZE = 960
#: Default Blosc block size in bytes of the zstd preset (README, "Layout measurements"): 64 KiB
#: is about 68 rows of a 960-wide uint8 chunk, so a crop decodes little beyond its rows.
DEFAULT_BLOCKSIZE = 64 * 1024
PRESETS = ("zstd", "lz4")
#: Each preset's default block size (0 = Blosc's own choice): measured fastest per crop. lz4
#: streams decode so fast that the per-block cost of 64 KiB blocks outweighs decoding fewer rows.
PRESET_BLOCKSIZE = {"zstd": DEFAULT_BLOCKSIZE, "lz4": 0}
ATTR = "zarrcrop"
DONE_DIR = ".zarrcrop-done"

#: Lock file in the dataset directory, held (flock) by the process writing the dataset.
LOCK_FILE = ".zarrcrop-lock"


def compressor_preset(name: str, blocksize: int | None = None) -> numcodecs.Blosc:
    """A compressor preset as a numcodecs codec.

    - ``"zstd"``: Blosc zstd, clevel 5, bit shuffle: the balanced default (good ratio on
      images); 64 KiB blocks.
    - ``"lz4"``: Blosc lz4, clevel 5, byte shuffle: for speed (crops decode about 3x faster than
      zstd's, files are about 45% larger); byte shuffle is free for uint8 (a no-op) and groups
      the bytes of float16/float32 values, where it helps lz4 most; Blosc's own block size.

    ``blocksize`` (bytes, 0 = Blosc's choice) overrides the preset's block size.
    """
    if name in PRESET_BLOCKSIZE and blocksize is None:
        blocksize = PRESET_BLOCKSIZE[name]
    if name == "zstd":
        return numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE, blocksize=blocksize)
    if name == "lz4":
        return numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE, blocksize=blocksize)
    raise ValueError(f"unknown compressor preset {name!r}; use one of {PRESETS} or a codec")


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _natural_key(path: str) -> list[Any]:
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


def _image_header(path: str) -> tuple[tuple[int, int, int], np.dtype]:
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
        if len(shape) == 2:
            return (1, shape[0], shape[1]), dtype
        if len(shape) == 3 and shape[-1] <= 4:
            return (shape[2], shape[0], shape[1]), dtype
        if len(shape) == 3:
            return (shape[0], shape[1], shape[2]), dtype
        raise ValueError(f"{path}: unsupported TIFF shape {shape}")
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


def _decode(reader: Any, path: str) -> np.ndarray:
    if _is_tiff(path):
        data = np.asarray(reader.imread(path))
        if data.ndim == 2:
            return data[None]
        if data.ndim == 3 and data.shape[-1] <= 4:
            return np.ascontiguousarray(data.transpose(2, 0, 1))
        return data
    with reader.open(path) as opened:
        im: Any = opened
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


@dataclass(frozen=True)
class ImageFiles:
    """A sorted list of image files of one size, read one frame at a time."""

    paths: tuple[str, ...]
    frame_shape: tuple[int, int, int]
    dtype: np.dtype
    #: The directory given as the source, if one was (create_dataset writes nothing inside it).
    folder: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, t: int) -> np.ndarray:
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
        paths = [p for p in _glob.glob(pattern) if os.path.isfile(p)]
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


def _looks_like_images(value: Any) -> bool:
    if isinstance(value, (str, os.PathLike)):
        return True
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, (str, os.PathLike)) for v in value)
    )


class _Source:
    """One input array: its frame shape, dtype, length (None: unknown) and frames."""

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
            arr = np.asarray(value)
            if arr.ndim == 3:
                arr = arr[:, None]
            if arr.ndim != 4:
                raise ValueError(
                    f"{name}: arrays must be (T, C, H, W) or (T, H, W), got {arr.shape}"
                )
            self.array = arr
        elif isinstance(value, Iterable):
            self._length = len(value) if hasattr(value, "__len__") else None  # type: ignore[arg-type]
            self._iter = iter(value)
            try:
                first = next(self._iter)
            except StopIteration:
                raise ValueError(f"{name}: no frames") from None
            self._peeked = _as_frame(name, first)
        else:
            raise TypeError(
                f"{name}: expected a numpy array, an iterable of frames, or image files "
                f"(a glob or a list of paths), got {type(value).__name__}"
            )
        if self.images is not None:
            self.frame_shape = self.images.frame_shape
            self.dtype = self.images.dtype
            self.length: int | None = len(self.images)
        elif self.array is not None:
            self.frame_shape = tuple(self.array.shape[1:])  # type: ignore[assignment]
            self.dtype = self.array.dtype
            self.length = int(self.array.shape[0])
        else:
            assert self._peeked is not None
            self.frame_shape = tuple(self._peeked.shape)  # type: ignore[assignment]
            self.dtype = self._peeked.dtype
            self.length = self._length
        if self.length == 0:
            raise ValueError(f"{name}: no frames")

    def frames(self) -> Iterator[tuple[int, Any]]:
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
                frame = _as_frame(self.name, frame)
                if frame.shape != self.frame_shape:
                    raise ValueError(
                        f"{self.name}: frame {t} has shape {frame.shape}, "
                        f"frame 0 has {self.frame_shape}"
                    )
                yield t, frame


@dataclass(frozen=True)
class _ImageFrame:
    images: ImageFiles
    t: int

    def __call__(self) -> np.ndarray:
        return self.images.frame(self.t)


def _as_frame(name: str, frame: Any) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name}: frames must be (C, H, W) or (H, W), got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------


def downscale_area(frame: np.ndarray, factor: int) -> np.ndarray:
    """Area downscaling of a (C, H, W) frame: the mean over ``factor x factor`` blocks.

    H and W are cropped to multiples of ``factor``; integer results are rounded to nearest.
    """
    c, h, w = frame.shape
    hh, ww = h // factor, w // factor
    blocks = frame[:, : hh * factor, : ww * factor].reshape(c, hh, factor, ww, factor)
    mean = blocks.mean(axis=(2, 4), dtype=np.float64)
    if np.issubdtype(frame.dtype, np.integer):
        info = np.iinfo(frame.dtype)
        return np.clip(np.rint(mean), info.min, info.max).astype(frame.dtype)
    return mean.astype(frame.dtype)


def _chunk_shape(frame_shape: Sequence[int], crop_size: int) -> tuple[int, ...]:
    c, h, w = frame_shape
    return (1, c, min(crop_size, h), min(crop_size, w))


def _resolve_compressor(compressor: Any, zarr_format: int, blocksize: int | None) -> Any:
    codec = compressor_preset(compressor, blocksize) if isinstance(compressor, str) else compressor
    if zarr_format == 3 and codec is not None:
        from .writable import v3_compressor

        codec = v3_compressor(codec)
    return codec


def _conversion(name: str, src: np.dtype, target: Any, lossless: bool) -> np.dtype:
    dst = np.dtype(target) if target is not None else src
    if dst == src or np.can_cast(src, dst, "safe"):
        return dst
    if lossless:
        raise ValueError(
            f"{name}: storing {src} as {dst} is lossy and lossless=True was given "
            "(drop lossless=True to convert and get the largest error reported)"
        )
    return dst


def _max_abs_error(original: np.ndarray, stored: np.ndarray) -> float:
    a = original.astype(np.float64)
    b = stored.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


@dataclass
class ArrayReport:
    """What ``create_dataset`` did for one array."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None = None
    source_dtype: str | None = None
    #: Largest absolute error of a lossy dtype conversion over all frames, those written by an
    #: interrupted earlier run included (None: no lossy conversion).
    max_abs_error: float | None = None
    frames_written: int = 0
    frames_skipped: int = 0


@dataclass
class CreateReport:
    """What ``create_dataset`` did: one :class:`ArrayReport` per array (levels included)."""

    path: str
    zarr_format: int
    arrays: dict[str, ArrayReport] = field(default_factory=dict)

    @property
    def frames_written(self) -> int:
        return sum(a.frames_written for a in self.arrays.values())

    @property
    def frames_skipped(self) -> int:
        return sum(a.frames_skipped for a in self.arrays.values())


@dataclass
class _Plan:
    """One array to write: its layout and where its frames come from."""

    name: str
    source: _Source
    dtype: np.dtype
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    lossy: bool
    derived: list[tuple[str, int]]  # (level array name, factor)
    level_chunks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    level_shards: dict[str, tuple[int, ...] | None] = field(default_factory=dict)


def _spec_of(arr: zarr.Array) -> dict[str, Any]:
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), "chunks": list(arr.chunks)}


# --------------------------------------------------------------------------------------------
# writing (shared by the thread pool and Dask workers)
# --------------------------------------------------------------------------------------------


def _done_dir(root: str, name: str) -> str:
    return os.path.join(root, *name.split("/"), DONE_DIR)


def _unit_done(root: str, name: str, unit: int) -> bool:
    return os.path.exists(os.path.join(_done_dir(root, name), str(unit)))


def _write_unit(
    root: str,
    name: str,
    t0: int,
    frames: list[Any],
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
    err = _max_abs_error(block, stored) if lossy else None
    store = zarr.storage.LocalStore(root)
    zarr.open_array(store=store, path=name, mode="r+")[t0 : t0 + len(data)] = stored
    written = [(name, stored)]
    for level_name, factor in derived:
        small = np.stack([downscale_area(f, factor) for f in stored])
        zarr.open_array(store=store, path=level_name, mode="r+")[t0 : t0 + len(data)] = small
        written.append((level_name, small))
    for array_name, expected in written:
        _check_written(store, root, array_name, t0, expected)
    marker_dir = _done_dir(root, name)
    os.makedirs(marker_dir, exist_ok=True)
    with open(os.path.join(marker_dir, str(unit)), "w") as marker:
        marker.write("" if err is None else repr(err))
    return err


def _check_written(
    store: zarr.storage.LocalStore, root: str, name: str, t0: int, expected: np.ndarray
) -> None:
    """Read frames t0.. of ``name`` back from disk; raise WriteCheckError unless they are there.

    zarr-python silently drops writes outside an array's shape, so a shape changed under this
    writer would otherwise leave fill values in frames marked done.
    """
    from .array import CropArray

    arr = zarr.open_array(store=store, path=name, mode="r")  # the shape on disk now
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


def _marker_errors(root: str, name: str) -> float:
    """The largest conversion error recorded in the markers of ``name`` (0.0 if none)."""
    worst = 0.0
    folder = _done_dir(root, name)
    if not os.path.isdir(folder):
        return worst
    for entry in os.listdir(folder):
        with open(os.path.join(folder, entry)) as marker:
            text = marker.read().strip()
        if text:
            worst = max(worst, float(text))
    return worst


def _progress_bar(total: int | None, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr)


def create_dataset(
    path: str | os.PathLike[str],
    arrays: Mapping[str, Any],
    *,
    crop_size: int | None = None,
    compressor: Any = "zstd",
    zarr_format: int = 2,
    shards: int | None = None,
    levels: Sequence[int] | None = None,
    level_source: str = "gt",
    lossless: bool = False,
    dtypes: Mapping[str, Any] | None = None,
    blocksize: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    client: Any = None,
    overwrite: bool = False,
    resume: bool = True,
    attrs: Mapping[str, Any] | None = None,
    wait: float = 0.0,
) -> CreateReport:
    """Write a dataset laid out for fast crops: a root group of (T, C, H, W) arrays.

    Parameters
    ----------
    path:
        Directory of the new dataset (a zarr group).
    arrays:
        Array name (may contain "/", e.g. ``"lr/720p/flow"``) to its data: a numpy array
        (T, C, H, W) or (T, H, W); an iterable or generator of (C, H, W) or (H, W) frames (read
        one at a time, never held whole); or image files: a glob pattern, a directory or a
        list of paths (sorted by name, decoded with Pillow, TIFF with tifffile, to (C, H, W);
        RGB images give (T, 3, H, W) uint8).
    crop_size:
        Expected crop side; chunks are ``(1, C, min(crop_size, H), min(crop_size, W))``.
        Default 960 (the tutorial's crops).
    compressor:
        ``"zstd"`` (Blosc zstd clevel 5 bitshuffle, default), ``"lz4"`` (Blosc lz4 clevel 5
        shuffle, faster, larger), any numcodecs codec (zarr v2) or zarr codec (v3), or None.
    zarr_format:
        2 (default, the tutorial's layout) or 3.
    shards:
        Zarr v3 only: frames per shard (each shard holds whole frames, so there are few files).
    levels:
        Downscale factors, e.g. ``(2, 3)``: derive ``lr/<H>x<W>/rgb`` from ``level_source``
        (default ``"gt"``) by area downscaling (mean over factor x factor blocks).
    lossless:
        Refuse any lossy dtype conversion (``ValueError``).
    dtypes:
        Array name to stored dtype, e.g. ``{"flow": "float16"}``. Lossy conversions report the
        largest absolute error (in the returned report and the array's attributes).
    blocksize:
        Blosc block size in bytes for the presets (default: the preset's, 64 KiB for zstd and
        Blosc's own choice for lz4; 0 = Blosc's choice; see the README for the trade-off).
    workers:
        Writer threads (default: the CPUs available). Compression releases the GIL.
    progress:
        Show a tqdm progress bar when tqdm is installed.
    client:
        A ``dask.distributed.Client`` or a scheduler address: write one Dask task per frame
        (per shard) on the cluster instead of local threads. Workers must see ``path``.
    overwrite:
        Delete whatever is at ``path`` first.
    resume:
        If ``path`` holds an unfinished conversion with the same layout, keep the finished
        frames and write only the missing ones (the inputs must be the same). Otherwise an
        existing non-empty ``path`` raises ``FileExistsError`` unless ``overwrite``.
    attrs:
        Extra attributes for the root group.
    wait:
        Seconds to wait when another process is writing ``path`` (it holds the lock file
        ``path/.zarrcrop-lock``; a crashed holder releases it). Default 0: raise
        :class:`DatasetLockedError` naming the holder at once. After the wait the dataset is
        resumed, so a second launch of the same conversion finds it finished.

    Returns
    -------
    CreateReport
        Per array: shape, dtype, chunks, frames written and skipped, conversion error.

    Every written frame is read back before it is marked done (``WriteCheckError`` if it is
    not there, e.g. when another program changed the array). An output that is, contains or
    lies inside an input image file or folder raises ``ValueError`` before anything is touched.
    """
    root = os.fspath(Path(_dataset_path(path)).expanduser())
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
    dtypes = dict(dtypes or {})
    unknown = set(dtypes) - set(arrays)
    if unknown:
        raise ValueError(f"dtypes names unknown arrays: {sorted(unknown)}")
    levels = tuple(int(f) for f in (levels or ()))
    if any(f < 2 for f in levels):
        raise ValueError(f"levels are downscale factors >= 2, got {levels}")
    if levels and level_source not in arrays:
        raise ValueError(f"levels need an array {level_source!r} to downscale")
    if blocksize is not None and (
        isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 0
    ):
        raise ValueError(
            f"blocksize must be a number of bytes >= 0 (0: Blosc's), got {blocksize!r}"
        )
    codec = _resolve_compressor(compressor, zarr_format, blocksize)

    plans: list[_Plan] = []
    for given_name, value in arrays.items():
        name = str(given_name).strip("/")
        if not name or any(part in ("", ".", "..") for part in name.split("/")):
            raise ValueError(
                f"array name {given_name!r} is not a path inside the dataset (like 'gt' or "
                "'lr/720p/rgb'; no empty, '.' or '..' parts)"
            )
        src = _Source(name, value)
        dtype = _conversion(name, src.dtype, dtypes.get(name), lossless)
        lossy = dtype != src.dtype and not np.can_cast(src.dtype, dtype, "safe")
        chunks = _chunk_shape(src.frame_shape, crop)
        shard_shape = None
        if shards is not None:
            shard_shape = (int(shards), *chunks[1:2], *_full(src.frame_shape[1:], chunks[2:]))
        plan = _Plan(name, src, dtype, chunks, shard_shape, lossy, [])
        if name == level_source:
            c, h, w = src.frame_shape
            for f in levels:
                hh, ww = h // f, w // f
                if hh < 1 or ww < 1:
                    raise ValueError(f"level {f} of {h}x{w} frames is empty")
                lname = f"lr/{hh}x{ww}/rgb"
                lchunks = _chunk_shape((c, hh, ww), max(1, math.ceil(crop / f)))
                plan.derived.append((lname, f))
                plan.level_chunks[lname] = lchunks
                plan.level_shards[lname] = (
                    None if shards is None else (int(shards), c, *_full((hh, ww), lchunks[2:]))
                )
        plans.append(plan)

    _refuse_inputs_in_output(root, plans)
    _check_target(Path(root), overwrite)
    os.makedirs(root, exist_ok=True)
    lock = _acquire_lock(root, wait)
    try:
        return _write_dataset(
            root,
            plans,
            codec,
            crop,
            zarr_format,
            overwrite,
            resume,
            attrs,
            progress,
            client,
            workers,
        )
    finally:
        _release_lock(root, lock)


def _dataset_path(path: Any) -> str | os.PathLike[str]:
    """``path``, or the directory of a zarr group (``zarr.Group``, ``CropGroup``) on disk."""
    if isinstance(path, (str, os.PathLike)):
        return path
    group = getattr(path, "zarr", path)  # a CropGroup's zarr.Group
    store = getattr(group, "store", None)
    if not isinstance(group, zarr.Group) or not isinstance(store, zarr.storage.LocalStore):
        raise TypeError(f"path must be a directory (str or PathLike), got {type(path).__name__}")
    where = os.path.join(str(store.root), *filter(None, str(group.path).split("/")))
    if store.read_only:
        raise ValueError(
            f"the group at {where} was opened read-only (mode='r'), and create_dataset writes: "
            "pass its path, or a group opened with mode='r+' (or 'a')"
        )
    return where


def _write_dataset(
    root: str,
    plans: list[_Plan],
    codec: Any,
    crop: int,
    zarr_format: int,
    overwrite: bool,
    resume: bool,
    attrs: Mapping[str, Any] | None,
    progress: bool,
    client: Any,
    workers: int | None,
) -> CreateReport:
    """create_dataset's writing part, run while holding the dataset's lock."""
    group = _open_root(root, overwrite=overwrite, resume=resume, zarr_format=zarr_format)
    was_complete = (group.attrs.get(ATTR) or {}).get("complete") is True  # type: ignore[union-attr]
    report = CreateReport(root, zarr_format)
    created: list[str] = []

    def make(
        name: str,
        length: int,
        frame_shape: Sequence[int],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        shard: tuple[int, ...] | None,
        extra: dict[str, Any],
    ) -> zarr.Array:
        shape = (length, *frame_shape)
        existing = _existing(group, name)
        wanted = {"shape": list(shape), "dtype": str(np.dtype(dtype)), "chunks": list(chunks)}
        found = _spec_of(existing) if existing is not None else None
        if found is not None:  # the number of frames may differ (a generator's array grows)
            found["shape"][0] = wanted["shape"][0]
        if existing is not None and found == wanted:
            if length and existing.shape[0] != length:
                existing.resize(shape)
                created.append(name)  # changed: a finished dataset must be revisited
            if extra:
                existing.attrs.update(extra)
            return existing
        if existing is not None:
            raise FileExistsError(
                f"{root}: array {name!r} exists with shape {tuple(existing.shape)}, dtype "
                f"{existing.dtype}, chunks {tuple(existing.chunks)}, but this conversion writes "
                f"shape {shape}, dtype {np.dtype(dtype)}, chunks {chunks}; pass overwrite=True "
                "to replace the dataset"
            )
        shutil.rmtree(_done_dir(root, name), ignore_errors=True)
        created.append(name)
        kwargs: dict[str, Any] = {}
        if shard is not None:
            kwargs["shards"] = shard
        arr = group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            compressors=codec,
            fill_value=0,
            overwrite=True,
            attributes={ATTR: {"layout": "TCHW", **extra}},
            **kwargs,
        )
        return arr

    unknown_length: list[tuple[_Plan, zarr.Array]] = []
    for plan in plans:
        src = plan.source
        length = src.length if src.length is not None else 0
        extra: dict[str, Any] = {"source_dtype": str(src.dtype)}
        arr = make(plan.name, length, src.frame_shape, plan.dtype, plan.chunks, plan.shards, extra)
        report.arrays[plan.name] = ArrayReport(
            plan.name,
            tuple(arr.shape),
            str(arr.dtype),
            tuple(arr.chunks),
            plan.shards,
            str(src.dtype),
        )
        if src.length is None:
            unknown_length.append((plan, arr))
        c, h, w = src.frame_shape
        for lname, f in plan.derived:
            hh, ww = h // f, w // f
            lextra = {"scale": f, "source": plan.name, "downscale": "area (mean of f x f blocks)"}
            larr = make(
                lname,
                length,
                (c, hh, ww),
                plan.dtype,
                plan.level_chunks[lname],
                plan.level_shards[lname],
                lextra,
            )
            report.arrays[lname] = ArrayReport(
                lname,
                tuple(larr.shape),
                str(larr.dtype),
                tuple(larr.chunks),
                plan.level_shards[lname],
                str(plan.dtype),
            )
            group.require_group(lname.rsplit("/", 1)[0]).attrs.update(
                {ATTR: {"scale": f, "source": plan.name, "shape_hw": [hh, ww]}}
            )
    root_attrs = dict(attrs or {})
    root_attrs[ATTR] = {
        "complete": False,
        "layout": "TCHW",
        "crop_size": crop,
        "levels": [
            {"array": lname, "scale": f, "source": p.name} for p in plans for lname, f in p.derived
        ],
    }
    if was_complete and not created and not unknown_length:
        # A finished conversion with the same layout: nothing to do.
        for plan in plans:
            for name in [plan.name, *(n for n, _ in plan.derived)]:
                report.arrays[name].frames_skipped = plan.source.length or 0
            if plan.lossy:
                found_err = _meta(group[plan.name]).get("max_abs_error")
                report.arrays[plan.name].max_abs_error = found_err
        return report
    group.attrs.update(root_attrs)

    total = sum(p.source.length or 0 for p in plans) or None
    bar = _progress_bar(None if unknown_length else total, progress, "zarrcrop create")
    try:
        if client is not None:
            _run_dask(client, root, plans, report, bar, group)
        else:
            _run_threads(root, plans, report, bar, group, workers)
    finally:
        if bar is not None:
            bar.close()

    for plan in plans:
        worst = _marker_errors(root, plan.name)
        shutil.rmtree(_done_dir(root, plan.name), ignore_errors=True)
        rep = report.arrays[plan.name]
        arr = cast(Any, group[plan.name])
        rep.shape = tuple(arr.shape)
        if plan.lossy:
            rep.max_abs_error = worst
            meta = _meta(arr)
            meta.update({"converted_from": str(plan.source.dtype), "max_abs_error": worst})
            arr.attrs[ATTR] = meta
            if progress:
                print(
                    f"zarrcrop: {plan.name}: stored {plan.source.dtype} as {plan.dtype}, "
                    f"largest absolute error {worst:.6g}",
                    file=sys.stderr,
                )
        for lname, _f in plan.derived:
            report.arrays[lname].shape = tuple(group[lname].shape)  # type: ignore[union-attr]
            report.arrays[lname].frames_written = rep.frames_written
            report.arrays[lname].frames_skipped = rep.frames_skipped
    meta = dict(group.attrs[ATTR])  # type: ignore[arg-type]
    meta["complete"] = True
    group.attrs[ATTR] = meta
    return report


def _meta(node: Any) -> dict[str, Any]:
    """A copy of the node's ``zarrcrop`` attribute (empty if it has none)."""
    value = node.attrs.get(ATTR)
    return dict(value) if isinstance(value, dict) else {}


def _full(hw: Sequence[int], chunk_hw: Sequence[int]) -> tuple[int, ...]:
    return tuple(math.ceil(n / c) * c for n, c in zip(hw, chunk_hw, strict=True))


def _existing(group: zarr.Group, name: str) -> zarr.Array | None:
    try:
        node = group[name]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Array) else None


def _is_zarrcrop_group(location: Path) -> bool:
    """A zarrcrop dataset, or a blank zarr group (no members, no attributes) to fill."""
    try:
        group = zarr.open_group(store=os.fspath(location), mode="r")
    except Exception:
        return False
    return isinstance(group.attrs.get(ATTR), dict) or _blank_group_only(location)


def _check_target(location: Path, overwrite: bool) -> None:
    """Refuse (or with ``overwrite`` clear) what is at ``location`` that the lock cannot guard:
    a file, or a non-empty directory that is not a dataset (no lock file is made in it)."""
    if location.is_symlink() and not location.exists():
        raise FileExistsError(f"{location} is a broken symbolic link")
    if location.exists() and not location.is_dir():
        if not overwrite:
            raise FileExistsError(
                f"{location} exists and is not a directory; pass overwrite=True to replace it"
            )
        location.unlink()
        return
    if overwrite or not location.is_dir():
        return
    names = os.listdir(location)  # one snapshot: a writer makes its lock file before the rest
    if names and LOCK_FILE not in names and not _is_zarrcrop_group(location):
        raise FileExistsError(
            f"{location} exists and is not a zarrcrop dataset; pass overwrite=True to replace it"
        )


def _inside(child: str, parent: str) -> bool:
    return child.startswith(parent.rstrip(os.sep) + os.sep)


def _refuse_inputs_in_output(root: str, plans: list[_Plan]) -> None:
    """Refuse an output that is, contains or lies inside an input image file or folder, before
    anything is written or deleted (overwrite=True would delete the images it reads)."""
    outs = {os.path.abspath(root), os.path.realpath(root)}
    for plan in plans:
        images = plan.source.images
        if images is None:
            continue
        given = [*([images.folder] if images.folder else []), *images.paths]
        for path in given:
            for inp in {os.path.abspath(path), os.path.realpath(path)}:
                for out in outs:
                    if inp == out:
                        how = "is"
                    elif _inside(inp, out):
                        how = "contains"
                    elif _inside(out, inp):
                        how = "lies inside"
                    else:
                        continue
                    raise ValueError(
                        f"the output {root} {how} the input {path} of array {plan.name!r}; "
                        "nothing was written or deleted: choose an output outside the inputs"
                    )


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _lock_holder(path: str) -> str:
    """What the lock file says about its holder ("pid N on HOST")."""
    for _ in range(10):  # the holder writes its pid just after locking
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.02)
    return "pid unknown"


def _acquire_lock(root: str, wait: float) -> int | None:
    """Lock ``root``'s lock file (flock, exclusive); the descriptor, or None without fcntl.

    Waits up to ``wait`` seconds for another holder, then raises DatasetLockedError. A holder
    that dies releases the lock (the kernel drops flocks with the last descriptor).
    """
    if fcntl is None:  # pragma: no cover - not on POSIX
        return None
    path = os.path.join(root, LOCK_FILE)
    deadline = time.monotonic() + max(0.0, float(wait))
    replaced = 0
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatasetLockedError(root, path, _lock_holder(path)) from None
            time.sleep(min(0.1, left))
            continue
        except OSError as exc:  # a file system without flock: write unguarded, as before
            import warnings

            warnings.warn(
                f"{path}: cannot lock ({exc}); a second conversion of {root} at the same time "
                "would not be detected",
                stacklevel=3,
            )
            return fd
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            return fd
        os.close(fd)  # its last holder removed it after we opened it: lock the new file
        replaced += 1
        if replaced > 1000:
            raise DatasetLockedError(root, path, "the lock file keeps being replaced")


def _release_lock(root: str, fd: int | None) -> None:
    if fd is None:  # pragma: no cover
        return
    path = os.path.join(root, LOCK_FILE)
    try:
        if _same_file(fd, path):  # removed while held, so a waiter sees it is stale
            os.unlink(path)
    except OSError:
        pass
    os.close(fd)


def _blank_group_only(location: Path) -> bool:
    """A zarr group without members or attributes (e.g. just made by open_group(mode="w"))."""
    names = {entry.name for entry in location.iterdir()} - {LOCK_FILE}
    if not names or not names <= {".zgroup", ".zattrs", "zarr.json"}:
        return False
    try:
        return not dict(zarr.open_group(store=os.fspath(location), mode="r").attrs)
    except Exception:
        return False


def _open_root(root: str, *, overwrite: bool, resume: bool, zarr_format: int) -> zarr.Group:
    """Open (or create) the root group; the caller made the directory and holds its lock."""
    location = Path(root)
    if overwrite or _blank_group_only(location):
        for entry in location.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    if any(entry.name != LOCK_FILE for entry in location.iterdir()):
        try:
            group = zarr.open_group(store=root, mode="r+")
        except Exception:
            group = None
        ours = group is not None and isinstance(group.attrs.get(ATTR), dict)
        if not ours:
            raise FileExistsError(
                f"{location} exists and is not a zarrcrop dataset; "
                "pass overwrite=True to replace it"
            )
        assert group is not None
        fmt = int(group.metadata.zarr_format)
        if not resume or fmt != zarr_format:
            raise FileExistsError(
                f"{location} already holds a dataset; pass overwrite=True to replace it"
                + ("" if resume else " (resume=False)")
            )
        return group
    # "a", not "w": "w" would delete the directory, lock file included (and "w-" sees it)
    group = zarr.open_group(store=root, mode="a", zarr_format=cast(Any, zarr_format))
    group.attrs[ATTR] = {"complete": False}
    return group


def _units(plan: _Plan) -> Iterator[tuple[int, int, list[Any]]]:
    """(unit index, first frame, frames) per unit of work: one frame, or one shard of frames."""
    per = plan.shards[0] if plan.shards is not None else 1
    batch: list[Any] = []
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


def _grow(group: zarr.Group, plan: _Plan, length: int) -> None:
    for name in [plan.name, *(n for n, _ in plan.derived)]:
        arr = group[name]
        if arr.shape[0] < length:  # type: ignore[union-attr]
            arr.resize((length, *arr.shape[1:]))  # type: ignore[union-attr]


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _run_threads(
    root: str,
    plans: list[_Plan],
    report: CreateReport,
    bar: Any,
    group: zarr.Group,
    workers: int | None,
) -> None:
    n = max(1, int(workers or _cpu_count()))
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="zarrcrop-create") as pool:
        pending: set[Future[Any]] = set()

        def drain(limit: int) -> None:
            nonlocal pending
            while len(pending) > limit:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    fut.result()

        for plan in plans:
            rep = report.arrays[plan.name]
            grow = plan.source.length is None
            for unit, t0, frames in _units(plan):
                if grow:
                    _grow(group, plan, t0 + len(frames))
                if _unit_done(root, plan.name, unit):
                    rep.frames_skipped += len(frames)
                    if bar is not None:
                        bar.update(len(frames))
                    continue

                def task(
                    plan: _Plan = plan,
                    t0: int = t0,
                    frames: list[Any] = frames,
                    unit: int = unit,
                    rep: ArrayReport = rep,
                ) -> None:
                    err = _write_unit(
                        root,
                        plan.name,
                        t0,
                        frames,
                        str(plan.dtype),
                        plan.lossy,
                        plan.derived,
                        unit,
                    )
                    with lock:
                        rep.frames_written += len(frames)
                        if err is not None:
                            rep.max_abs_error = max(rep.max_abs_error or 0.0, err)
                        if bar is not None:
                            bar.update(len(frames))

                pending.add(pool.submit(task))
                drain(2 * n)
        drain(0)


def _run_dask(
    client: Any, root: str, plans: list[_Plan], report: CreateReport, bar: Any, group: zarr.Group
) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "client= needs dask.distributed: pip install 'dask[distributed]'"
        ) from exc
    own = isinstance(client, str)
    if own:
        client = Client(client)
    try:
        for plan in plans:
            rep = report.arrays[plan.name]
            grow = plan.source.length is None
            futures: dict[Any, int] = {}
            window = max(4, 2 * len(client.scheduler_info().get("workers", {})) or 4)
            ac = as_completed()

            def collect(
                fut: Any, rep: ArrayReport = rep, futures: dict[Any, int] = futures
            ) -> None:
                err = fut.result()
                count = futures.pop(fut)
                rep.frames_written += count
                if err is not None:
                    rep.max_abs_error = max(rep.max_abs_error or 0.0, err)
                if bar is not None:
                    bar.update(count)

            for unit, t0, frames in _units(plan):
                if grow:
                    _grow(group, plan, t0 + len(frames))
                if _unit_done(root, plan.name, unit):
                    rep.frames_skipped += len(frames)
                    if bar is not None:
                        bar.update(len(frames))
                    continue
                fut = client.submit(
                    _write_unit,
                    root,
                    plan.name,
                    t0,
                    frames,
                    str(plan.dtype),
                    plan.lossy,
                    plan.derived,
                    unit,
                    key=f"zarrcrop-create-{plan.name}-{unit}-{id(plan)}",
                    pure=False,
                )
                futures[fut] = len(frames)
                ac.add(fut)
                while len(futures) > window:
                    collect(next(ac))
            while futures:
                collect(next(ac))
    finally:
        if own:
            client.close()
