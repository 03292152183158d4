"""README.md's Python examples, checked with ``mypy --strict`` (tests/test_typing.py, .ci/run).

Each README block is a function here, so importing this file runs nothing; the code inside is
the README's, with the names the README leaves undefined given types. The torch blocks are left
out (torch is optional). ``assert_type`` pins what the entry points return.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, assert_type

import numcodecs  # type: ignore[import-untyped, unused-ignore]  # untyped up to 0.16 at least
import numpy as np
import zarr
import zarrcrop
from zarrcrop.writable import WritableArray, WritableGroup


def using_it() -> None:
    """README: "Using it": open a group, random crops, ``out=``."""
    # z = zarr.open_group("demo.zarr", mode="r")      # before
    z = zarrcrop.open_group("demo.zarr")  # after: read-only, same indexing
    gt = z["gt"]  # a zarrcrop.CropArray
    print(gt.shape, gt.dtype, gt.chunks, gt.native)

    size = 960
    T, _, H, W = gt.shape
    for _ in range(100):
        t = random.randint(0, T - 1)
        top, left = random.randint(0, H - size), random.randint(0, W - size)
        patch = gt[t, :, top : top + size, left : left + size]  # np.ndarray, CHW order

    out = np.empty((3, size, size), dtype=gt.dtype)
    gt.read((t, slice(None), slice(top, top + size), slice(left, left + size)), out=out)
    print(patch.shape)

    assert_type(z, zarrcrop.CropGroup)


def opening_forms(zarr_array: zarr.Array[Any], path: str) -> None:
    """The API reference's ways to open."""
    arr = zarrcrop.open("demo.zarr", "gt")
    assert_type(arr, zarrcrop.CropArray)
    assert_type(zarrcrop.open(zarr_array), zarrcrop.CropArray)
    assert_type(zarrcrop.open(path, strict=True, cache_bytes=1 << 20), zarrcrop.CropArray)
    assert_type(zarrcrop.open_group(path, strict=True), zarrcrop.CropGroup)
    assert_type(zarrcrop.open_group("file:///data/demo.zarr"), zarrcrop.CropGroup)
    assert_type(zarrcrop.open_group(zarr.storage.MemoryStore()), zarrcrop.CropGroup)
    print(arr.native, arr.fallback_reason)
    print(arr.cache_info()["hits"])
    zarrcrop.set_num_threads(4)
    print(zarrcrop.get_num_threads(), zarrcrop.MAX_THREADS)


def batch_crops(gt: zarrcrop.CropArray, positions: list[tuple[int, int, int]]) -> None:
    """README: "Batch crops for training, with edge crops padded"."""
    starts = np.array([[t, 0, top, left] for t, top, left in positions])  # (N, 4)
    batch = gt.read_crops(starts, (1, 3, 960, 960), boundary="fill")  # (N, 1, 3, 960, 960)
    print(batch.shape)


def tutorial_creation() -> None:
    """README: "The tutorial's creation code, with zarrcrop"."""
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    root = zarrcrop.open_group("demo.zarr", mode="w")  # was: zarr.open_group(...)
    gt = root.create_dataset(
        "gt",
        shape=(100, 3, 2160, 3840),
        chunks=(1, 3, 960, 960),
        dtype="uint8",
        compressor=compressor,
    )
    gt[0] = np.random.randint(0, 255, gt.shape[1:], np.uint8)  # writes go to zarr-python
    patch = gt[0, :, 500:1460, 1000:1960]  # reads are native
    g = root.require_group("lr/720p")  # nested groups, as in the tutorial

    assert_type(root, WritableGroup)
    assert_type(gt, WritableArray)
    assert_type(g, WritableGroup)
    print(patch.shape)
    for mode in ("w-", "a", "r+"):
        assert_type(zarrcrop.open_group("demo.zarr", mode=mode, zarr_format=3), WritableGroup)


def flow_frames() -> Iterator[np.ndarray[Any, np.dtype[np.float32]]]:
    yield np.zeros((2, 720, 1280), np.float32)


def fast_layout(depth_array: np.ndarray[Any, np.dtype[np.float32]]) -> None:
    """README: "zarrcrop.create_dataset: the fast layout by default"."""
    report = zarrcrop.create_dataset(
        "train.zarr",
        {
            "gt": "frames/*.png",  # image files: a glob, a directory or a list
            "lr/720p/flow": flow_frames(),  # any iterable of (C, H, W) frames (never held whole)
            "lr/720p/depth": depth_array,  # a numpy array (T, C, H, W)
        },
        crop_size=960,  # chunks (1, C, 960, 960)
        dtypes={"lr/720p/flow": "float16"},  # explicit, reported lossy conversion
        levels=(2, 3),  # also lr/1080p/rgb and lr/720p/rgb from gt (4K frames)
    )
    print(report.arrays["lr/720p/flow"].max_abs_error)
