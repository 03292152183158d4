"""Creating datasets: zarrcrop.create_dataset (round trips, layout, dtype policy, levels,
sharding, resume, Dask) and writable groups (open_group(mode="w" / "r+"), create_dataset on
them, the read-only group's hints).

Two writers on one path: tests/test_create_concurrent.py; the command line: tests/test_cli.py;
writable modes over other store kinds: tests/test_open_stores.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import assert_same
from zarrcrop.create import compressor_preset, downscale_area, image_files

T, C, H, W = 5, 3, 64, 96


def frames(n: int = T, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, C, H, W), dtype=np.uint8)


def test_numpy_round_trip_and_layout(tmp_path: Path) -> None:
    data = frames()
    report = zarrcrop.create_dataset(tmp_path / "d", {"gt": data}, crop_size=32, progress=False)
    assert report.arrays["gt"].frames_written == T
    g = zarrcrop.open_group(tmp_path / "d")
    gt = g["gt"]
    assert gt.native and gt.zarr_format == 2
    assert gt.chunks == (1, C, 32, 32)
    np.testing.assert_array_equal(gt[:], data)
    comp = gt.zarr.metadata.compressor
    assert isinstance(comp, numcodecs.Blosc)
    assert (comp.cname, comp.clevel, comp.shuffle) == ("zstd", 5, numcodecs.Blosc.BITSHUFFLE)
    assert comp.blocksize == zarrcrop.create.DEFAULT_BLOCKSIZE
    assert g.attrs["zarrcrop"]["complete"] is True
    assert not (tmp_path / "d" / "gt" / ".zarrcrop-done").exists()


def test_default_chunks_follow_frame_size(tmp_path: Path) -> None:
    zarrcrop.create_dataset(tmp_path / "d", {"gt": frames(2)}, progress=False)
    assert zarrcrop.open(tmp_path / "d", "gt").chunks == (1, C, H, W)  # frame < 960


def test_generator_input_and_names_with_slashes(tmp_path: Path) -> None:
    data = frames(7, seed=1)
    seen = []

    def gen():
        for t in range(len(data)):
            seen.append(t)
            yield data[t]

    zarrcrop.create_dataset(tmp_path / "d", {"lr/720p/rgb": gen()}, crop_size=40, progress=False)
    arr = zarrcrop.open(tmp_path / "d", "lr/720p/rgb")
    assert arr.shape == (7, C, H, W)
    np.testing.assert_array_equal(arr[:], data)
    assert seen == list(range(7))


@pytest.mark.parametrize("preset", ["zstd", "lz4"])
@pytest.mark.parametrize("fmt", [2, 3])
def test_presets_and_formats(tmp_path: Path, preset: str, fmt: int) -> None:
    data = frames(3)
    zarrcrop.create_dataset(
        tmp_path / "d", {"gt": data}, compressor=preset, zarr_format=fmt, crop_size=32,
        progress=False,
    )  # fmt: skip
    arr = zarrcrop.open(tmp_path / "d", "gt", strict=True)
    assert arr.zarr_format == fmt
    np.testing.assert_array_equal(arr[:, :, 5:50, 7:90], data[:, :, 5:50, 7:90])


def test_custom_codec(tmp_path: Path) -> None:
    data = frames(2)
    zarrcrop.create_dataset(
        tmp_path / "d", {"gt": data}, compressor=numcodecs.Zstd(level=3), progress=False
    )
    arr = zarrcrop.open(tmp_path / "d", "gt")
    assert isinstance(arr.zarr.metadata.compressor, numcodecs.Zstd)
    np.testing.assert_array_equal(arr[:], data)
    with pytest.raises(ValueError, match="preset"):
        zarrcrop.create_dataset(tmp_path / "e", {"gt": data}, compressor="brotli", progress=False)


def test_sharding_v3(tmp_path: Path) -> None:
    data = frames(5, seed=3)
    zarrcrop.create_dataset(
        tmp_path / "d", {"gt": data}, zarr_format=3, shards=2, crop_size=32, progress=False
    )
    arr = zarrcrop.open(tmp_path / "d", "gt", strict=True)
    assert arr.zarr.shards == (2, C, 64, 96)
    np.testing.assert_array_equal(arr[:], data)
    shard_files = [p for p in (tmp_path / "d" / "gt").rglob("*") if p.is_file()]
    assert len(shard_files) == 3 + 1  # 3 shards + zarr.json
    with pytest.raises(ValueError, match="zarr_format=3"):
        zarrcrop.create_dataset(tmp_path / "e", {"gt": data}, shards=2, progress=False)


def test_float16_conversion_reports_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(4)
    flow = rng.normal(0, 8, (3, 2, H, W)).astype(np.float32)
    depth = rng.uniform(0, 50, (3, 1, H, W)).astype(np.float32)
    report = zarrcrop.create_dataset(
        tmp_path / "d",
        {"flow": flow, "depth": depth},
        dtypes={"flow": "float16"},
        progress=True,
    )
    expected = float(np.abs(flow.astype(np.float16).astype(np.float64) - flow).max())
    assert expected > 0
    assert report.arrays["flow"].max_abs_error == pytest.approx(expected)
    assert report.arrays["depth"].max_abs_error is None  # no conversion: stored as float32
    g = zarrcrop.open_group(tmp_path / "d")
    assert g["flow"].dtype == np.float16 and g["depth"].dtype == np.float32
    assert g["flow"].attrs["zarrcrop"]["max_abs_error"] == pytest.approx(expected)
    np.testing.assert_array_equal(g["depth"][:], depth)
    assert "largest absolute error" in capsys.readouterr().err


def test_interrupted_conversion_keeps_error_report(tmp_path: Path) -> None:
    flow = np.random.default_rng(10).normal(0, 8, (6, 2, 16, 24)).astype(np.float32)
    flow[1, 0, 0, 0] = 1000.1  # the worst error is in frame 1, written by the first run

    def failing():
        yield from flow[:3]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        zarrcrop.create_dataset(
            tmp_path / "d", {"flow": failing()}, dtypes={"flow": "float16"}, workers=1,
            progress=False,
        )  # fmt: skip
    report = zarrcrop.create_dataset(
        tmp_path / "d", {"flow": list(flow)}, dtypes={"flow": "float16"}, progress=False
    )
    rep = report.arrays["flow"]
    assert rep.frames_skipped >= 1 and rep.frames_written + rep.frames_skipped == 6
    expected = float(np.abs(flow.astype(np.float16).astype(np.float64) - flow).max())
    assert rep.max_abs_error == pytest.approx(expected)
    np.testing.assert_array_equal(zarrcrop.open(tmp_path / "d", "flow")[:], flow.astype(np.float16))


def test_lossless_refuses_lossy_conversion(tmp_path: Path) -> None:
    flow = np.zeros((2, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="lossy"):
        zarrcrop.create_dataset(
            tmp_path / "d", {"flow": flow}, dtypes={"flow": "float16"}, lossless=True,
            progress=False,
        )  # fmt: skip
    # widening is fine even when lossless
    zarrcrop.create_dataset(
        tmp_path / "e", {"x": frames(2)}, dtypes={"x": "uint16"}, lossless=True, progress=False
    )
    assert zarrcrop.open(tmp_path / "e", "x").dtype == np.uint16


def test_levels(tmp_path: Path) -> None:
    data = frames(3, seed=5)
    report = zarrcrop.create_dataset(
        tmp_path / "d", {"gt": data}, levels=(2, 3), crop_size=48, progress=False
    )
    g = zarrcrop.open_group(tmp_path / "d")
    half, third = g["lr/32p/rgb"], g["lr/21p/rgb"]
    assert half.shape == (3, C, 32, 48) and third.shape == (3, C, 21, 32)
    assert half.chunks == (1, C, 24, 24)
    for t in range(3):
        np.testing.assert_array_equal(half[t], downscale_area(data[t], 2))
        np.testing.assert_array_equal(third[t], downscale_area(data[t], 3))
    expected = data[0, :, :2, :2].astype(float).mean(axis=(1, 2))
    np.testing.assert_array_equal(half[0, :, 0, 0], np.rint(expected).astype(np.uint8))
    assert half.attrs["zarrcrop"]["scale"] == 2
    assert g["lr/32p"].attrs["zarrcrop"]["scale"] == 2
    assert {lv["scale"] for lv in g.attrs["zarrcrop"]["levels"]} == {2, 3}
    assert set(report.arrays) == {"gt", "lr/32p/rgb", "lr/21p/rgb"}


def test_level_names_follow_the_tutorial(tmp_path: Path) -> None:
    """Levels are named by frame height, as the tutorial's lr/720p/rgb: 4K / 3 is 720p."""
    uhd = np.broadcast_to(np.uint8(7), (1, 3, 2160, 3840))  # one 4K frame, no 25 MB copy
    report = zarrcrop.create_dataset(tmp_path / "d", {"gt": uhd}, levels=(2, 3), progress=False)
    assert set(report.arrays) == {"gt", "lr/1080p/rgb", "lr/720p/rgb"}
    g = zarrcrop.open_group(tmp_path / "d")
    assert g["lr/720p/rgb"].shape == (1, 3, 720, 1280)
    assert g["lr/1080p/rgb"].shape == (1, 3, 1080, 1920)
    assert [lv["array"] for lv in g.attrs["zarrcrop"]["levels"]] == ["lr/1080p/rgb", "lr/720p/rgb"]


def test_level_name_clashes_are_refused(tmp_path: Path) -> None:
    tiny = np.zeros((1, 3, 3, 40), np.uint8)  # 3 // 2 == 3 // 3: both levels are 1 pixel high
    with pytest.raises(
        ValueError, match=r"levels 2 and 3 of 'gt' would both be written to 'lr/1p/rgb'"
    ):
        zarrcrop.create_dataset(tmp_path / "d", {"gt": tiny}, levels=(2, 3), progress=False)
    with pytest.raises(ValueError, match=r"'lr/32p/rgb', which is also an array given to write"):
        zarrcrop.create_dataset(
            tmp_path / "d", {"gt": frames(1), "lr/32p/rgb": frames(1)}, levels=(2,),
            progress=False,
        )  # fmt: skip
    assert not (tmp_path / "d").exists()


def _png_frames(tmp_path: Path, data: np.ndarray) -> Path:
    from PIL import Image

    folder = tmp_path / "png"
    folder.mkdir()
    for t, frame in enumerate(data):  # named so that plain sorting would get it wrong
        Image.fromarray(frame.transpose(1, 2, 0)).save(folder / f"frame{t}.png")
    return folder


def test_image_files(tmp_path: Path) -> None:
    data = frames(11, seed=6)
    folder = _png_frames(tmp_path, data)
    zarrcrop.create_dataset(tmp_path / "d", {"gt": str(folder / "*.png")}, progress=False)
    gt = zarrcrop.open(tmp_path / "d", "gt")
    assert gt.shape == (11, 3, H, W) and gt.dtype == np.uint8
    np.testing.assert_array_equal(gt[:], data)
    # a list works too, tiff as well
    import tifffile

    tifs = []
    for t in range(2):
        p = tmp_path / f"f{t}.tif"
        tifffile.imwrite(p, data[t].transpose(1, 2, 0))
        tifs.append(str(p))
    zarrcrop.create_dataset(tmp_path / "e", {"gt": tifs}, progress=False)
    np.testing.assert_array_equal(zarrcrop.open(tmp_path / "e", "gt")[:], data[:2])


def test_image_errors(tmp_path: Path) -> None:
    from PIL import Image

    with pytest.raises(FileNotFoundError, match="no image files"):
        image_files(str(tmp_path / "*.png"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="mixed image sizes"):
        image_files(str(tmp_path / "*.png"))


def test_existing_path_and_overwrite(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "file.txt").write_text("x")
    with pytest.raises(FileExistsError):
        zarrcrop.create_dataset(other, {"gt": frames(1)}, progress=False)
    zarrcrop.create_dataset(other, {"gt": frames(1)}, overwrite=True, progress=False)
    np.testing.assert_array_equal(zarrcrop.open(other, "gt")[:], frames(1))
    # a finished dataset re-run with resume: nothing rewritten
    report = zarrcrop.create_dataset(other, {"gt": frames(1)}, progress=False)
    assert report.arrays["gt"].frames_written == 0  # already complete: nothing rewritten
    assert report.arrays["gt"].frames_skipped == 1
    with pytest.raises(FileExistsError):
        zarrcrop.create_dataset(other, {"gt": frames(1)}, resume=False, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):  # another layout
        zarrcrop.create_dataset(other, {"gt": frames(1)}, crop_size=16, progress=False)
    np.testing.assert_array_equal(zarrcrop.open(other, "gt")[:], frames(1))


def test_parallel_writes_many_workers(tmp_path: Path) -> None:
    data = frames(16, seed=7)
    zarrcrop.create_dataset(tmp_path / "d", {"gt": data}, workers=4, progress=False)
    np.testing.assert_array_equal(zarrcrop.open(tmp_path / "d", "gt")[:], data)


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import zarrcrop

    path, slow = sys.argv[1], float(sys.argv[2])
    data = np.random.default_rng(8).integers(0, 256, (12, 3, 64, 96), dtype=np.uint8)

    def gen():
        for t in range(len(data)):
            time.sleep(slow)
            yield data[t]

    class Frames:
        def __len__(self):
            return len(data)

        def __iter__(self):
            return gen()

    report = zarrcrop.create_dataset(
        path, {"gt": Frames()}, levels=(2,), workers=2, progress=False
    )
    print(report.arrays["gt"].frames_written, report.arrays["gt"].frames_skipped)
    """
)


def test_resume_after_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "convert.py"
    script.write_text(_KILL_SCRIPT)
    path = tmp_path / "d"
    done = path / "gt" / ".zarrcrop-done"
    proc = subprocess.Popen([sys.executable, str(script), str(path), "0.15"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if done.exists() and len(os.listdir(done)) >= 4:
                break
            assert proc.poll() is None, "conversion ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = sorted(int(n) for n in os.listdir(done))
    assert 4 <= len(finished) < 12
    assert zarr.open_group(str(path), mode="r").attrs["zarrcrop"]["complete"] is False
    mtimes = {
        t: os.stat(path / "gt" / f"{t}.0.0.0").st_mtime_ns for t in finished
    }  # fmt: skip

    out = subprocess.run(
        [sys.executable, str(script), str(path), "0"], capture_output=True, text=True, check=True
    )
    written, skipped = map(int, out.stdout.split())
    assert skipped == len(finished) and written == 12 - len(finished)
    for t in finished:  # finished frames were not rewritten
        assert os.stat(path / "gt" / f"{t}.0.0.0").st_mtime_ns == mtimes[t]
    data = np.random.default_rng(8).integers(0, 256, (12, 3, 64, 96), dtype=np.uint8)
    g = zarrcrop.open_group(path)
    np.testing.assert_array_equal(g["gt"][:], data)
    for t in range(12):
        np.testing.assert_array_equal(g["lr/32p/rgb"][t], downscale_area(data[t], 2))
    assert g.attrs["zarrcrop"]["complete"] is True


def test_dask_local_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    data = frames(6, seed=9)
    flow = np.random.default_rng(9).normal(0, 3, (6, 2, H, W)).astype(np.float32)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        report = zarrcrop.create_dataset(
            tmp_path / "d",
            {"gt": data, "flow": flow},
            dtypes={"flow": "float16"},
            levels=(2,),
            client=client,
            progress=False,
        )
    g = zarrcrop.open_group(tmp_path / "d")
    np.testing.assert_array_equal(g["gt"][:], data)
    np.testing.assert_array_equal(g["flow"][:], flow.astype(np.float16))
    np.testing.assert_array_equal(g["lr/32p/rgb"][1], downscale_area(data[1], 2))
    assert report.arrays["gt"].frames_written == 6
    assert report.arrays["flow"].max_abs_error == pytest.approx(
        float(np.abs(flow.astype(np.float16).astype(np.float64) - flow).max())
    )


def test_compressor_preset_values() -> None:
    lz4 = compressor_preset("lz4")
    assert (lz4.cname, lz4.clevel, lz4.shuffle) == ("lz4", 5, numcodecs.Blosc.SHUFFLE)
    # one definition, in zarrcrop.presets, for create_dataset and the writable groups
    import zarrcrop.presets
    import zarrcrop.writable

    assert compressor_preset is zarrcrop.presets.compressor_preset
    assert zarrcrop.writable.v3_compressor is zarrcrop.presets.v3_compressor


def test_dask_scheduler_address(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    data = frames(3, seed=11)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        zarrcrop.create_dataset(
            tmp_path / "d",
            {"gt": iter(data)},
            zarr_format=3,
            shards=2,
            client=cluster.scheduler_address,
            progress=False,
        )
    np.testing.assert_array_equal(zarrcrop.open(tmp_path / "d", "gt")[:], data)


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("tqdm")
    zarrcrop.create_dataset(tmp_path / "d", {"gt": frames(3)}, progress=True)
    err = capsys.readouterr().err
    assert "zarrcrop create" in err and "3/3" in err


def test_preset_block_sizes(tmp_path: Path) -> None:
    """zstd: 64 KiB blocks; lz4: Blosc's own choice (measured fastest, README); both overridable."""
    data = frames(1)
    for preset, blocksize, expected in [
        ("zstd", None, zarrcrop.create.DEFAULT_BLOCKSIZE),
        ("lz4", None, 0),
        ("lz4", 32768, 32768),
        ("zstd", 0, 0),
    ]:
        path = tmp_path / f"{preset}-{blocksize}"
        zarrcrop.create_dataset(
            path, {"gt": data}, compressor=preset, blocksize=blocksize, progress=False
        )
        gt = zarrcrop.open_group(path)["gt"]
        comp = gt.zarr.metadata.compressor
        assert (comp.cname, comp.blocksize) == (preset, expected)
        np.testing.assert_array_equal(gt[:], data)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="blocksize"):
            zarrcrop.create_dataset(tmp_path / "bad", {"gt": data}, blocksize=bad, progress=False)


def _png_folder(folder: Path, n: int = 3) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True)
    paths = []
    for t in range(n):
        paths.append(folder / f"f{t}.png")
        Image.fromarray(np.full((16, 24, 3), t + 1, np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize(
    ("out", "source", "how"),
    [
        ("P", "P/frames/*.png", "contains"),  # the images' parent
        ("P/frames", "P/frames/*.png", "contains"),  # the images' folder
        ("P/frames", "P/frames", "is"),  # the folder given as the source
        ("P/frames/out.zarr", "P/frames", "lies inside"),
        ("link", "P/frames/*.png", "contains"),  # a symbolic link to P
    ],
)
def test_output_overlapping_the_inputs_is_refused(
    tmp_path: Path, out: str, source: str, how: str
) -> None:
    """overwrite=True used to delete the images before reading them."""
    paths = _png_folder(tmp_path / "P" / "frames")
    (tmp_path / "link").symlink_to(tmp_path / "P")
    for overwrite in (True, False):
        with pytest.raises(ValueError, match=f"the output .* {how} the input") as info:
            zarrcrop.create_dataset(
                tmp_path / out,
                {"gt": str(tmp_path / source)},
                overwrite=overwrite,
                progress=False,
            )
        message = str(info.value)
        assert str(tmp_path / out) in message
        assert str(tmp_path / "P" / "frames") in message  # the input folder or a file in it
        assert all(p.is_file() for p in paths)
    assert not (tmp_path / "P" / "frames" / "out.zarr").exists()
    assert sorted(os.listdir(tmp_path / "P" / "frames")) == ["f0.png", "f1.png", "f2.png"]


def test_image_list_inside_output_is_refused(tmp_path: Path) -> None:
    paths = _png_folder(tmp_path / "d" / "in")
    files = image_files([str(p) for p in paths])
    with pytest.raises(ValueError, match="contains the input"):
        zarrcrop.create_dataset(tmp_path / "d", {"gt": files}, overwrite=True, progress=False)
    assert all(p.is_file() for p in paths)
    # next to the images is fine
    zarrcrop.create_dataset(tmp_path / "d" / "out.zarr", {"gt": files}, progress=False)
    assert zarrcrop.open(tmp_path / "d" / "out.zarr", "gt").shape == (3, 3, 16, 24)


def test_truncated_image_error_names_the_file(tmp_path: Path) -> None:
    paths = _png_folder(tmp_path / "in")
    whole = paths[1].read_bytes()
    paths[1].write_bytes(whole[: len(whole) - 40])  # the header survives, the pixels do not
    with pytest.raises(OSError, match="truncated") as info:
        zarrcrop.create_dataset(tmp_path / "d", {"gt": str(tmp_path / "in")}, progress=False)
    assert str(paths[1]) in str(info.value)
    paths[2].write_bytes(b"not an image")
    with pytest.raises(OSError) as info:
        image_files(str(tmp_path / "in"))
    assert str(paths[2]) in str(info.value)


def test_frames_outside_a_shrunk_array_are_not_marked_done(tmp_path: Path) -> None:
    """zarr-python drops writes outside the shape silently; the read-back check catches it."""
    path = tmp_path / "d"
    data = frames(8, seed=12) | 1  # no zero value: a dropped frame would read as zeros

    class Frames:  # another program shrinks the array while frame 5 is being produced
        def __len__(self) -> int:
            return len(data)

        def __iter__(self):
            for t in range(len(data)):
                if t == 5:
                    zarr.open_array(str(path), path="gt", mode="r+").resize((3, C, H, W))
                yield data[t]

    # Frames ahead of the writer may land before or after the shrink: either check fires.
    either = r"outside the array's shape|read back different"
    with pytest.raises(RuntimeError, match=either) as info:
        zarrcrop.create_dataset(path, {"gt": Frames()}, workers=1, progress=False)
    assert type(info.value).__name__ == "WriteCheckError" and str(path) in str(info.value)
    done = {int(n) for n in os.listdir(path / "gt" / ".zarrcrop-done")}
    assert done and max(done) < 5
    assert zarr.open_group(str(path), mode="r").attrs["zarrcrop"]["complete"] is False
    # a resume without the interference completes it
    zarrcrop.create_dataset(path, {"gt": data}, progress=False)
    np.testing.assert_array_equal(zarrcrop.open(path, "gt")[:], data)


def test_read_only_group(tmp_path: Path) -> None:
    path = tmp_path / "g.zarr"
    zarrcrop.open_group(path, mode="w").create_dataset("a", shape=(2, 2), dtype="uint8")
    read_only = zarr.open_group(str(path), mode="r")
    with pytest.raises(ValueError, match=r"read-only \(mode='r'\).*mode='r\+' \(or 'a'\)"):
        zarrcrop.open_group(read_only, mode="r+").create_dataset("b", shape=(2,), dtype="u1")
    with pytest.raises(ValueError, match=r"read-only.*mode='r\+' \(or 'a'\)"):
        zarrcrop.create_dataset(zarrcrop.open_group(path), {"gt": frames(1)}, progress=False)
    assert "b" not in zarr.open_group(str(path), mode="r")
    # a writable group works: create_dataset writes at its path
    fresh = zarrcrop.open_group(tmp_path / "new.zarr", mode="w")
    zarrcrop.create_dataset(fresh, {"gt": frames(2)}, progress=False)
    np.testing.assert_array_equal(zarrcrop.open(tmp_path / "new.zarr", "gt")[:], frames(2))


@pytest.mark.parametrize("name", ["", "/", "a//b", "a/../b", "./gt"])
def test_bad_array_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="is not a path inside the dataset") as info:
        zarrcrop.create_dataset(tmp_path / "d", {name: frames(1)}, progress=False)
    assert repr(name) in str(info.value)
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------------------
# Writable groups
# --------------------------------------------------------------------------------------


def test_writable_group_arrays_still_accept_writes(tmp_path):
    root = zarrcrop.open_group(tmp_path / "w.zarr", mode="w")
    arr = root.create_dataset("a", shape=(4,), chunks=(2,), dtype="int8")
    arr[1:3] = 5
    assert_same(zarrcrop.open(tmp_path / "w.zarr", "a")[...], np.array([0, 5, 5, 0], "int8"))


@pytest.mark.parametrize("method", ["create_dataset", "create_array", "require_group"])
def test_creating_in_a_read_only_group_says_how(tutorial_group, method):
    path, _ = tutorial_group
    g = zarrcrop.open_group(path)
    with pytest.raises(AttributeError) as info:
        getattr(g, method)("new", shape=(4,), dtype="uint8")
    message = str(info.value)
    assert "read-only" in message and "mode='r+'" in message and str(path) in message
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        g.nonsense  # noqa: B018
    w = zarrcrop.open_group(path, mode="r+")
    assert w.create_dataset("new", shape=(4,), dtype="uint8").shape == (4,)
