"""README.md's Python examples, checked with ``mypy --strict`` (tests/test_typing.py, .ci/run).

The README's usage blocks build on each other (each uses names the earlier ones defined), so
they are one function here, in the README's order; the creation examples of
docs/creating-datasets.md are functions too. Importing this file runs nothing (the examples
themselves are run by tests/test_readme.py). The code inside is the documents', with the
functions they define given annotations. The torch blocks are left out (torch is optional).
``assert_type`` pins what the entry points return.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, assert_type

import numcodecs  # type: ignore[import-untyped, unused-ignore]  # untyped up to 0.16 at least
import numpy as np
import zarr
import zarrcrop
from PIL import Image
from zarrcrop.create.report import CreateReport
from zarrcrop.writable import WritableArray, WritableGroup


def readme_usage() -> None:
    """README: "Usage": a dataset to try, reading crops, ``out=``, batches, reading ahead."""
    # -- A dataset to try
    # 4 frames of 4K RGB noise (the tutorial writes 100 such frames)
    frames = np.random.default_rng(0).integers(0, 256, (4, 3, 2160, 3840), dtype=np.uint8)
    report = zarrcrop.create_dataset("demo.zarr", {"gt": frames}, levels=(3,), progress=False)
    print(sorted(report.arrays))  # ['gt', 'lr/720p/rgb']
    assert_type(report, CreateReport)

    # -- Reading crops
    # z = zarr.open_group("demo.zarr", mode="r")      # before
    z = zarrcrop.open_group("demo.zarr")  # after: read-only, same indexing
    gt = z["gt"]  # a zarrcrop.CropArray
    print(gt.shape, gt.dtype, gt.chunks)  # (4, 3, 2160, 3840) uint8 (1, 3, 960, 960)
    print(gt.native)  # True: read by the C++ core

    size = 960
    T, _, H, W = gt.shape
    for _ in range(100):
        t = random.randint(0, T - 1)
        top, left = random.randint(0, H - size), random.randint(0, W - size)
        patch = gt[t, :, top : top + size, left : left + size]  # np.ndarray (3, 960, 960), CHW
    assert_type(z, zarrcrop.CropGroup)
    print(patch.shape)

    lr = zarrcrop.open("demo.zarr", "lr/720p/rgb")  # (4, 3, 720, 1280)
    same = zarrcrop.open(zarr.open_array("demo.zarr/lr/720p/rgb", mode="r"))
    assert (lr[0, :, :320, :320] == same[0, :, :320, :320]).all()
    assert_type(lr, zarrcrop.CropArray)
    assert_type(same, zarrcrop.CropArray)

    # -- Reading into your own buffer
    out = np.empty((3, size, size), dtype=gt.dtype)
    gt.read((t, slice(None), slice(top, top + size), slice(left, left + size)), out=out)

    # -- Batches of crops
    positions = [(0, 0, 0), (1, 1200, 2880), (3, 1800, -200)]  # (t, top, left); the last one
    starts = np.array([[t, 0, top, left] for t, top, left in positions])  # reaches past two edges
    batch = gt.read_crops(starts, (1, 3, 960, 960), boundary="fill")  # (N, 1, 3, 960, 960)
    print(batch.shape)  # (3, 1, 3, 960, 960)

    # -- Reading ahead
    batches = [np.array([[t, 0, 0, 0], [t, 0, 960, 960]]) for t in range(T)]
    for i, starts in enumerate(batches):
        # The batch after next (its chunk headers), then the next one (its blocks).
        for ahead in reversed(batches[i + 1 : i + 3]):
            gt.prefetch(ahead, (1, 3, 960, 960))
        crops = gt.read_crops(starts, (1, 3, 960, 960))
    print(crops.shape)


def opening_forms(zarr_array: zarr.Array[Any], path: str) -> None:
    """The API reference's ways to open (docs/api.md)."""
    arr = zarrcrop.open("demo.zarr", "gt")
    assert_type(arr, zarrcrop.CropArray)
    assert_type(zarrcrop.open(zarr_array), zarrcrop.CropArray)
    assert_type(zarrcrop.open(path, strict=True, cache_bytes=1 << 20), zarrcrop.CropArray)
    assert_type(zarrcrop.open_group(path, strict=True), zarrcrop.CropGroup)
    assert_type(zarrcrop.open_group("file:///data/demo.zarr"), zarrcrop.CropGroup)
    assert_type(zarrcrop.open_group(zarr.storage.MemoryStore()), zarrcrop.CropGroup)
    print(arr.native, arr.fallback_reason)
    print(arr.cache_info()["hits"])
    assert_type(arr.prefetch(np.zeros((1, 4), np.int64), (1, 3, 960, 960)), int)
    zarrcrop.set_num_threads(4)
    print(zarrcrop.get_num_threads(), zarrcrop.MAX_THREADS)


def tutorial_creation() -> None:
    """docs/creating-datasets.md: "The tutorial's creation code, with zarrcrop"."""
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

    # -- the tutorial's multi-resolution example
    root = zarrcrop.open_group("multi_res.zarr", mode="w")

    for res, shape in [
        ("720p", (100, 3, 720, 1280)),
        ("1080p", (100, 3, 1080, 1920)),
        ("2160p", (100, 3, 2160, 3840)),
    ]:
        g = root.require_group(f"lr/{res}")
        g.create_dataset(
            "rgb", shape=shape, chunks=(1, 3, 360, 640), dtype="uint8", compressor=compressor
        )
        g.create_dataset(
            "flow",
            shape=(100, 2, shape[2], shape[3]),
            chunks=(1, 2, 360, 640),
            dtype="float16",
            compressor=compressor,
        )

    rgb_1080 = root["lr/1080p/rgb"]
    # Typing only: a writable group's [] gives an array or a group; the docs index it directly.
    assert isinstance(rgb_1080, WritableArray)
    patch_1080 = rgb_1080[5, :, 200:1160, 300:1500]  # frames not written: fill value 0
    print(patch_1080.shape)


def fast_layout() -> None:
    """docs/creating-datasets.md: "zarrcrop.create_dataset: the fast layout by default"."""
    rng = np.random.default_rng(0)
    Path("frames").mkdir(exist_ok=True)
    for t in range(2):  # two 4K RGB frames
        pixels = rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(f"frames/frame{t}.png", compress_level=1)

    def flow_frames() -> Iterator[np.ndarray[Any, np.dtype[np.float32]]]:
        for _ in range(2):
            yield rng.standard_normal((2, 720, 1280), dtype=np.float32)

    depth_array = rng.random((2, 1, 720, 1280), dtype=np.float32)  # (T, C, H, W)

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
    print(sorted(report.arrays))  # gt, lr/1080p/rgb, lr/720p/depth, lr/720p/flow, lr/720p/rgb
    print(report.arrays["lr/720p/flow"].max_abs_error)  # float32 -> float16: about 0.002
    lr720 = zarrcrop.open_group("train.zarr")["lr/720p/rgb"]
    print(lr720.shape, lr720.chunks)  # (2, 3, 720, 1280) (1, 3, 320, 320)
