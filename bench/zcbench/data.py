"""Benchmark datasets: the tutorial's 4K layout with photo or random content, and float16 flow.

Datasets are built once into a cache directory and reused by later sessions. Each one is
written to a temporary directory, renamed into place, and only then marked complete by a
marker file, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numcodecs
import numpy as np
import zarr
import zarr.codecs

__all__ = [
    "DATA_VERSION",
    "FRAMES",
    "DataCache",
    "DatasetSpec",
    "dataset_spec",
    "default_data_root",
]

#: Bump when the generated content or layout changes: the cache directory name follows it.
DATA_VERSION = 1
#: Frames per array (the tutorial has 100; 4 keeps building fast and crops still spread
#: over 4 * 12 chunks of the 4K arrays).
FRAMES = 4

Content = Literal["photo", "random", "flow"]

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
TILE = (540, 960)  # a 4 x 4 grid of tiles makes one 2160 x 3840 frame


@dataclass(frozen=True)
class DatasetSpec:
    """One array of the benchmark data: content, zarr format and layout."""

    content: Content
    zarr_format: int
    array: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    # "blosc": Blosc zstd 5 bitshuffle (the tutorial's); v3 only: "sharded" (the same Blosc
    # inner chunks, one shard per frame) and "zstd" (zarr-python's default v3 codecs).
    layout: str = "blosc"

    @property
    def name(self) -> str:
        suffix = "" if self.layout == "blosc" else self.layout
        return f"{self.content}-v{self.zarr_format}{suffix}"

    @property
    def shards(self) -> tuple[int, ...]:
        """One shard per frame: the frame rounded up to whole inner chunks."""
        return tuple(
            -(-n // c) * c if i else c
            for i, (n, c) in enumerate(zip(self.shape, self.chunks, strict=True))
        )


def dataset_spec(
    content: Content, zarr_format: int, frames: int = FRAMES, layout: str = "blosc"
) -> DatasetSpec:
    """The layout of a dataset: the tutorial's ``gt`` for photo/random, its ``flow`` else."""
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format}")
    if layout not in ("blosc", "sharded", "zstd") or (layout != "blosc" and zarr_format != 3):
        raise ValueError(f"layout {layout!r} is not available for zarr v{zarr_format}")
    if content == "flow":
        return DatasetSpec(
            content,
            zarr_format,
            "flow",
            (frames, 2, 720, 1280),
            (1, 2, 360, 640),
            "float16",
            layout,
        )
    if content in ("photo", "random"):
        return DatasetSpec(
            content,
            zarr_format,
            "gt",
            (frames, 3, 2160, 3840),
            (1, 3, 960, 960),
            "uint8",
            layout,
        )
    raise ValueError(f"unknown content {content!r}")


def default_data_root() -> Path:
    """``$ZARRCROP_BENCH_DATA``, else ``~/.cache/zarrcrop-bench/data-v<N>-t<frames>``."""
    env = os.environ.get("ZARRCROP_BENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "zarrcrop-bench" / f"data-v{DATA_VERSION}-t{FRAMES}"


class DataCache:
    """Builds datasets under ``root`` on first use and returns the paths of their arrays."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def group_path(self, spec: DatasetSpec) -> Path:
        return self.root / f"{spec.name}.zarr"

    def marker_path(self, spec: DatasetSpec) -> Path:
        return self.root / f"{spec.name}.complete"

    def is_complete(self, spec: DatasetSpec) -> bool:
        marker = self.marker_path(spec)
        if not marker.is_file() or not self.group_path(spec).is_dir():
            return False
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            return False
        return bool(recorded == _marker_content(spec))

    def array_path(self, spec: DatasetSpec) -> Path:
        """The array's directory, building the dataset first if it is not complete."""
        if not self.is_complete(spec):
            self.build(spec)
        return self.group_path(spec) / spec.array

    def build(self, spec: DatasetSpec) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.group_path(spec)
        marker = self.marker_path(spec)
        marker.unlink(missing_ok=True)
        if final.exists():
            shutil.rmtree(final)
        tmp = self.root / f".tmp-{spec.name}-{os.getpid()}.zarr"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            _write_dataset(tmp, spec)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        marker.write_text(json.dumps(_marker_content(spec), indent=1) + "\n")

    def warm(self, spec: DatasetSpec) -> int:
        """Read every file of the dataset once (page cache warm); returns the bytes read."""
        total = 0
        for path in sorted(self.group_path(spec).rglob("*")):
            if path.is_file():
                total += len(path.read_bytes())
        return total


def _marker_content(spec: DatasetSpec) -> dict[str, object]:
    info: dict[str, object] = {"data_version": DATA_VERSION}
    info.update({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()})
    return info


def _write_dataset(path: Path, spec: DatasetSpec) -> None:
    group = zarr.open_group(str(path), mode="w", zarr_format=spec.zarr_format)  # type: ignore[arg-type]
    group.attrs["zarrcrop_bench"] = {"content": spec.content, "data_version": DATA_VERSION}
    if spec.zarr_format == 2:
        array = group.create_array(
            spec.array,
            shape=spec.shape,
            chunks=spec.chunks,
            dtype=spec.dtype,
            fill_value=0,
            compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
        )
    elif spec.layout == "zstd":  # zarr-python's default codecs for v3: bytes + zstd
        array = group.create_array(
            spec.array, shape=spec.shape, chunks=spec.chunks, dtype=spec.dtype, fill_value=0
        )
    else:
        array = group.create_array(
            spec.array,
            shape=spec.shape,
            chunks=spec.chunks,
            shards=spec.shards if spec.layout == "sharded" else None,
            dtype=spec.dtype,
            fill_value=0,
            serializer=zarr.codecs.BytesCodec(),
            compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
        )
    for t, frame in enumerate(_frames(spec)):
        array[t] = frame


def _frames(spec: DatasetSpec) -> Iterator[np.ndarray]:
    frames, *frame_shape = spec.shape
    for t in range(frames):
        if spec.content == "photo":
            yield photo_frame(t, tuple(frame_shape))
        elif spec.content == "random":
            yield random_frame(t, tuple(frame_shape))
        else:
            yield flow_frame(t, tuple(frame_shape))


def random_frame(t: int, shape: tuple[int, ...]) -> np.ndarray:
    """Incompressible uint8 noise (Blosc stores such chunks memcpyed)."""
    rng = np.random.default_rng(10_000 + t)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} is not an RGB uint8 photo: {image.shape}")
    return image


def _tile(rng: np.random.Generator) -> np.ndarray:
    """A TILE-sized (H, W, 3) uint8 view of a random part of a random photo."""
    from skimage.transform import resize

    image = _photo(PHOTOS[int(rng.integers(len(PHOTOS)))])
    height, width = image.shape[:2]
    # The largest window of the tile's aspect ratio, scaled down by up to 40%, at a random
    # place: frames do not repeat the same tiles even though there are only a few photos.
    aspect = TILE[1] / TILE[0]
    win_h = min(height, int(width / aspect))
    win_w = min(width, int(win_h * aspect))
    scale = rng.uniform(0.6, 1.0)
    win_h, win_w = max(8, int(win_h * scale)), max(8, int(win_w * scale))
    top = int(rng.integers(0, height - win_h + 1))
    left = int(rng.integers(0, width - win_w + 1))
    window = image[top : top + win_h, left : left + win_w]
    if rng.random() < 0.5:
        window = window[:, ::-1]
    tile = np.asarray(
        resize(window, (*TILE, 3), order=1, preserve_range=True, anti_aliasing=True),  # type: ignore[no-untyped-call]
        dtype=np.float64,
    )
    return np.clip(np.rint(tile), 0, 255).astype(np.uint8)


def photo_frame(t: int, shape: tuple[int, ...]) -> np.ndarray:
    """A (3, H, W) uint8 frame tiled from real photographs, shifted differently per frame."""
    channels, height, width = shape
    if channels != 3 or height % TILE[0] or width % TILE[1]:
        raise ValueError(f"photo frames need shape (3, k*{TILE[0]}, m*{TILE[1]}), got {shape}")
    rng = np.random.default_rng(20_000 + t)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, TILE[0]):
        for left in range(0, width, TILE[1]):
            frame[top : top + TILE[0], left : left + TILE[1]] = _tile(rng)
    shift = (int(rng.integers(0, height)), int(rng.integers(0, width)))
    frame = np.roll(frame, shift, axis=(0, 1))
    return np.ascontiguousarray(frame.transpose(2, 0, 1))


def flow_frame(t: int, shape: tuple[int, ...]) -> np.ndarray:
    """A (2, H, W) float16 optical-flow-like field: smooth motion plus a little noise."""
    channels, height, width = shape
    rng = np.random.default_rng(30_000 + t)
    yy, xx = np.meshgrid(
        np.linspace(0.0, 1.0, height, dtype=np.float32),
        np.linspace(0.0, 1.0, width, dtype=np.float32),
        indexing="ij",
    )
    out = np.empty((channels, height, width), dtype=np.float32)
    for c in range(channels):
        field = np.full((height, width), rng.normal(0.0, 4.0), dtype=np.float32)
        for _ in range(6):  # large-scale smooth motion
            fy, fx = rng.uniform(0.2, 3.0, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            field += rng.uniform(1.0, 8.0) * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
        for _ in range(4):  # independently moving objects
            cy, cx = rng.uniform(0, 1, size=2)
            radius = rng.uniform(0.03, 0.15)
            blob = np.exp(-((yy - cy) ** 2 + ((xx - cx) * width / height) ** 2) / radius**2)
            field += rng.uniform(-20.0, 20.0) * blob
        field += rng.normal(0.0, 0.25, size=(height, width)).astype(np.float32)
        out[c] = field
    return out.astype(np.float16)
