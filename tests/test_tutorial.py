"""The tutorial's code (docs/zarr-tutorial.md), as its readers run it, with zarrcrop.open_group.

Sizes are reduced; otherwise the calls are the tutorial's: group creation with ``compressor=``,
``require_group``, multi-resolution ``create_dataset``, slicing reads and the random-crop loop.
Every read is compared with zarr-python's.
"""

from __future__ import annotations

import random
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import assert_same
from zarrcrop.writable import WritableArray, WritableGroup

T, H, W = 4, 216, 384  # the tutorial's 100 x 2160 x 3840, scaled down
CHUNK = 96  # the tutorial's 960


@pytest.fixture
def compressor() -> numcodecs.Blosc:
    return numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


def test_creating_a_zarr_dataset(tmp_path: Path, compressor: numcodecs.Blosc) -> None:
    path = str(tmp_path / "demo.zarr")
    # -- the tutorial's "Creating a Zarr Dataset", zarr.open_group -> zarrcrop.open_group
    root = zarrcrop.open_group(path, mode="w")
    gt = root.create_dataset(
        "gt", shape=(T, 3, H, W), chunks=(1, 3, CHUNK, CHUNK), dtype="uint8", compressor=compressor
    )
    data = np.random.default_rng(0).integers(0, 255, gt.shape, np.uint8)
    gt[:] = data
    # -- the layout the tutorial shows: zarr v2
    assert (Path(path) / ".zgroup").exists()
    assert (Path(path) / "gt" / ".zarray").exists()
    assert (Path(path) / "gt" / "0.0.0.0").exists()
    assert isinstance(root, WritableGroup) and isinstance(gt, WritableArray)
    assert gt.native, gt.fallback_reason
    assert gt.zarr.metadata.compressor == compressor

    # -- "Reading Crops from Zarr"
    z = zarrcrop.open_group(path, mode="r")
    zp = zarr.open_group(path, mode="r")
    assert z["gt"].shape == zp["gt"].shape == (T, 3, H, W)
    t, top, left = 0, 50, 100
    patch = z["gt"][t, :, top : top + CHUNK, left : left + CHUNK]
    assert patch.shape == (3, CHUNK, CHUNK)
    np.testing.assert_array_equal(patch, zp["gt"][t, :, top : top + CHUNK, left : left + CHUNK])
    np.testing.assert_array_equal(z["gt"][:], data)
    # reads through the writable array are native and see the writes
    np.testing.assert_array_equal(gt[:], data)


def test_writes_are_seen_by_native_reads(tmp_path: Path, compressor: numcodecs.Blosc) -> None:
    root = zarrcrop.open_group(tmp_path / "w.zarr", mode="w")
    a = root.create_dataset(
        "x", shape=(3, 3, 40, 50), chunks=(1, 3, 16, 16), dtype="uint8", compressor=compressor
    )
    np.testing.assert_array_equal(a[:], 0)
    root["x"][1] = 7
    np.testing.assert_array_equal(a[1], 7)
    a[2, :, 5:20, 3:30] = 9
    expected = np.zeros((3, 3, 40, 50), np.uint8)
    expected[1] = 7
    expected[2, :, 5:20, 3:30] = 9
    np.testing.assert_array_equal(a[:], expected)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "w.zarr" / "x"))[:], expected)


def test_multiresolution_and_random_crops(tmp_path: Path, compressor: numcodecs.Blosc) -> None:
    path = str(tmp_path / "multi_res.zarr")
    rng = np.random.default_rng(1)
    # -- "Example: Multiresolution Dataset"
    root = zarrcrop.open_group(path, mode="w")
    resolutions = [
        ("720p", (T, 3, 72, 128)),
        ("1080p", (T, 3, 108, 192)),
        ("2160p", (T, 3, 216, 384)),
    ]
    for res, shape in resolutions:
        g = root.require_group(f"lr/{res}")
        g.create_dataset(
            "rgb", shape=shape, chunks=(1, 3, 36, 64), dtype="uint8", compressor=compressor
        )
        g.create_dataset(
            "flow",
            shape=(T, 2, shape[2], shape[3]),
            chunks=(1, 2, 36, 64),
            dtype="float16",
            compressor=compressor,
        )
        g["rgb"][:] = rng.integers(0, 255, shape, np.uint8)
        for t in range(T):
            g["flow"][t] = rng.normal(0, 4, (2, shape[2], shape[3])).astype(np.float16)
    # the random-crop loop reads z['gt'] for its shape: the tutorial's dataset has one
    root.create_dataset(
        "gt", shape=(T, 3, H, W), chunks=(1, 3, CHUNK, CHUNK), dtype="uint8", compressor=compressor
    )

    zp = zarr.open_group(path, mode="r")
    assert zp.metadata.zarr_format == 2
    # -- "Now you can read crops at any resolution level with:"
    patch_1080 = root["lr/1080p/rgb"][3, :, 20:116, 30:150]
    np.testing.assert_array_equal(patch_1080, zp["lr/1080p/rgb"][3, :, 20:116, 30:150])
    assert root["lr/1080p/rgb"].native and root["lr/1080p/flow"].native
    np.testing.assert_array_equal(root["lr/720p/flow"][:], zp["lr/720p/flow"][:])

    # -- "Random Crop Access Example"
    z = zarrcrop.open_group(path, mode="r")
    random.seed(0)

    def random_crop(res: str = "2160p", size: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
        t = random.randint(0, z["gt"].shape[0] - 1)
        H, W = z["gt"].shape[2:]
        top = random.randint(0, H - size)
        left = random.randint(0, W - size)
        crop = z[f"lr/{res}/rgb"][t, :, top : top + size, left : left + size]
        ref = zp[f"lr/{res}/rgb"][t, :, top : top + size, left : left + size]
        return crop, ref

    for _ in range(20):
        crop, ref = random_crop()
        assert crop.shape == (3, CHUNK, CHUNK)
        np.testing.assert_array_equal(crop, ref)


def test_modes(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr"
    with pytest.raises(FileNotFoundError):
        zarrcrop.open_group(path, mode="r+")
    g = zarrcrop.open_group(path, mode="a")
    g.create_dataset("a", shape=(2, 4), chunks=(1, 4), dtype="int16")[:] = 5
    g2 = zarrcrop.open_group(path, mode="a")
    assert "a" in g2
    np.testing.assert_array_equal(g2["a"][:], 5)
    g3 = zarrcrop.open_group(path, mode="r+")
    g3["a"][0] = 1
    np.testing.assert_array_equal(zarrcrop.open_group(path)["a"][:, 0], [1, 5])
    with pytest.raises(FileExistsError):
        zarrcrop.open_group(path, mode="w-")
    g4 = zarrcrop.open_group(path, mode="w")
    assert "a" not in g4
    with pytest.raises(ValueError):
        zarrcrop.open_group(path, mode="x")
    # read-only default unchanged
    ro = zarrcrop.open_group(path)
    assert not isinstance(ro, WritableGroup)


def test_zarr_format_3(tmp_path: Path, compressor: numcodecs.Blosc) -> None:
    path = tmp_path / "v3.zarr"
    root = zarrcrop.open_group(path, mode="w", zarr_format=3)
    a = root.create_dataset(
        "gt", shape=(2, 3, 40, 60), chunks=(1, 3, 16, 16), dtype="uint8", compressor=compressor
    )
    data = np.random.default_rng(2).integers(0, 255, a.shape, np.uint8)
    a[:] = data
    assert (path / "zarr.json").exists()
    assert a.native, a.fallback_reason
    np.testing.assert_array_equal(a[:, :, 3:30, 7:50], data[:, :, 3:30, 7:50])
    np.testing.assert_array_equal(zarr.open_group(str(path), mode="r")["gt"][:], data)


def test_create_array_and_defaults(tmp_path: Path) -> None:
    root = zarrcrop.open_group(tmp_path / "d.zarr", mode="w")
    a = root.create_array("a", shape=(2, 3, 8, 8), chunks=(1, 3, 8, 8), dtype="uint8")
    assert a.native
    assert isinstance(a.zarr.metadata.compressor, numcodecs.Blosc)
    b = root.create_dataset("b", data=np.arange(12, dtype=np.int32).reshape(3, 4), chunks=(2, 2))
    np.testing.assert_array_equal(b[:], np.arange(12).reshape(3, 4))
    c = root.create_dataset("c", shape=(4,), chunks=(2,), dtype="f4", compressor=None)
    assert c.native
    same = root.require_dataset("a", shape=(2, 3, 8, 8), dtype="uint8")
    assert same.shape == (2, 3, 8, 8)
    with pytest.raises(TypeError):
        root.require_dataset("a", shape=(9,), dtype="uint8")
    sub = root.require_group("x/y")
    assert isinstance(sub, WritableGroup)
    assert isinstance(root["x"]["y"], WritableGroup)


def test_resize_and_append_keep_native_reads(tmp_path: Path) -> None:
    g = zarrcrop.open_group(tmp_path / "r.zarr", mode="w")
    a = g.create_dataset("a", shape=(2, 4, 4), chunks=(1, 4, 4), dtype="u1")
    a[:] = 3
    a.resize(3, 4, 4)
    assert a.shape == (3, 4, 4) and a.native
    np.testing.assert_array_equal(a[2], 0)
    a.append(np.ones((1, 4, 4), "u1"))
    assert a.shape == (4, 4, 4)
    np.testing.assert_array_equal(a[:], zarr.open_array(str(tmp_path / "r.zarr" / "a"))[:])


# --------------------------------------------------------------------------------------
# The tutorial's read pattern on its layout (the tutorial_group fixture)
# --------------------------------------------------------------------------------------


@pytest.mark.native
def test_tutorial_read_pattern(tutorial_group):
    path, gt = tutorial_group
    expected = zarr.open_group(str(path), mode="r")["gt"]
    z = zarrcrop.open_group(path)
    assert z["gt"].native, z["gt"].fallback_reason
    assert z["gt"].shape == (2, 3, 216, 384)
    for t in range(2):
        for top, left in [(0, 0), (120, 288), (50, 70), (96, 96), (17, 201)]:
            crop = z["gt"][t, :, top : top + 96, left : left + 96]
            assert crop.shape == (3, 96, 96)
            assert_same(crop, expected[t, :, top : top + 96, left : left + 96])
            assert_same(crop, gt[t, :, top : top + 96, left : left + 96])
