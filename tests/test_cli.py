"""The ``zarrcrop`` command line end to end: create, info, bench (through subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarrcrop

T, H, W = 4, 64, 96


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zarrcrop", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("frames")
    data = np.random.default_rng(0).integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    for t in range(T):
        Image.fromarray(data[t]).save(folder / f"img_{t}.png")
    return folder, data.transpose(0, 3, 1, 2)


@pytest.fixture(scope="module")
def dataset(
    tmp_path_factory: pytest.TempPathFactory, images: tuple[Path, np.ndarray]
) -> tuple[Path, np.ndarray]:
    folder, data = images
    out = tmp_path_factory.mktemp("ds") / "data.zarr"
    res = run("create", str(out), "--images", str(folder / "*.png"), "--crop-size", "32",
              "--levels", "2", "--no-progress")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "gt: shape (4, 3, 64, 96) uint8" in res.stdout
    return out, data


def test_create_round_trip(dataset: tuple[Path, np.ndarray]) -> None:
    out, data = dataset
    g = zarrcrop.open_group(out)
    assert g["gt"].chunks == (1, 3, 32, 32) and g["gt"].native
    np.testing.assert_array_equal(g["gt"][:], data)
    assert g["lr/32p/rgb"].shape == (T, 3, 32, 48)


def test_create_v3_sharded_lz4(tmp_path: Path, images: tuple[Path, np.ndarray]) -> None:
    folder, data = images
    out = tmp_path / "v3.zarr"
    res = run("create", str(out), "--images", str(folder), "--name", "frames/rgb",
              "--format", "3", "--shards", "2", "--compressor", "lz4", "--no-progress")  # fmt: skip
    assert res.returncode == 0, res.stderr
    arr = zarrcrop.open(out, "frames/rgb", strict=True)
    assert arr.zarr.shards == (2, 3, 64, 96)
    np.testing.assert_array_equal(arr[:], data)


def test_info(dataset: tuple[Path, np.ndarray]) -> None:
    out, _ = dataset
    res = run("info", str(out))
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "gt  (4, 3, 64, 96) uint8" in text
    assert "chunks (1, 3, 32, 32)" in text
    assert "cname='zstd'" in text and "BITSHUFFLE" in text
    assert "compression ratio" in text and "file(s)" in text
    assert text.count("reads: native") == 2
    assert "total:" in text


def test_info_reports_fallback(tmp_path: Path) -> None:
    import numcodecs
    import zarr

    g = zarr.open_group(str(tmp_path / "f.zarr"), mode="w", zarr_format=2)
    a = g.create_array("x", shape=(2, 8, 8), chunks=(1, 8, 8), dtype="uint8",
                       compressors=numcodecs.LZ4())  # fmt: skip
    a[:] = 1
    res = run("info", str(tmp_path / "f.zarr"))
    assert res.returncode == 0, res.stderr
    assert "falls back to zarr-python" in res.stdout


def test_bench(dataset: tuple[Path, np.ndarray]) -> None:
    out, _ = dataset
    res = run("bench", str(out), "--crop", "48", "--crops", "10")
    assert res.returncode == 0, res.stderr
    assert "crops/s" in res.stdout and "decode bound" in res.stdout
    assert "OK: all 10 crops are identical" in res.stdout
    res = run("bench", str(out), "--array", "lr/32p/rgb", "--crop", "64", "--crops", "5")
    assert res.returncode == 0, res.stderr
    assert "32x48" in res.stdout
    res = run("bench", str(out), "--crop", "200", "--crops", "3")  # chunks 32 << crop
    assert res.returncode == 0, res.stderr


def test_bench_advice(tmp_path: Path) -> None:
    zarrcrop.create_dataset(tmp_path / "small.zarr", {"gt": np.zeros((2, 3, 64, 96), np.uint8)},
                            crop_size=8, progress=False)  # fmt: skip
    res = run("bench", str(tmp_path / "small.zarr"), "--crop", "64", "--crops", "3")
    assert res.returncode == 0, res.stderr
    assert "advice: chunks (8x8) are much smaller than the crop" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("info", "/nonexistent/x.zarr"), "does not exist"),
        (("bench", "/nonexistent/x.zarr"), "does not exist"),
        (("create", "OUT", "--images", "/nonexistent/*.png"), "no image files match"),
        (("create", "OUT", "--images", "x", "--shards", "2"), "--shards needs --format 3"),
    ],
)
def test_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_mixed_sizes_and_not_zarr(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "b.png")
    res = run("create", str(tmp_path / "o"), "--images", str(tmp_path / "*.png"))
    assert res.returncode == 2 and "mixed image sizes" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run("info", str(tmp_path))
    assert res.returncode == 2 and "not a zarr group or array" in res.stderr
    res = run("bench", str(tmp_path))
    assert res.returncode == 2 and "not a zarr group or array" in res.stderr


def test_existing_output_needs_overwrite(tmp_path: Path, images: tuple[Path, np.ndarray]) -> None:
    folder, _ = images
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = run("create", str(out), "--images", str(folder / "*.png"), "--no-progress")
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (out / "keep.txt").exists()


@pytest.mark.parametrize("command", ["create", "info", "bench", "demo"])
def test_help(command: str) -> None:
    res = run(command, "--help")
    assert res.returncode == 0 and "usage: zarrcrop" in res.stdout


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zarrcrop: error: "), res.stderr
    return lines[0]


def test_create_without_pillow(tmp_path: Path, images: tuple[Path, np.ndarray]) -> None:
    folder, _ = images
    code = (
        "import sys; sys.modules['PIL'] = None; from zarrcrop.cli import main; "  # no Pillow
        f"sys.exit(main(['create', {str(tmp_path / 'o')!r}, '--images', {str(folder)!r}]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = _one_error_line(res)
    assert 'pip install "zarrcrop[create]"' in line and "Pillow" in line
    assert not (tmp_path / "o").exists()


def test_create_truncated_image_names_the_file(tmp_path: Path, images: tuple[Path, np.ndarray]):
    folder, _ = images
    bad = tmp_path / "in"
    bad.mkdir()
    for p in folder.glob("*.png"):
        (bad / p.name).write_bytes(p.read_bytes())
    whole = (bad / "img_2.png").read_bytes()
    (bad / "img_2.png").write_bytes(whole[: len(whole) - 50])
    res = run("create", str(tmp_path / "o"), "--images", str(bad / "*.png"), "--no-progress")
    line = _one_error_line(res)
    assert str(bad / "img_2.png") in line and "truncated" in line


def test_create_refuses_output_holding_the_images(tmp_path: Path) -> None:
    from PIL import Image

    frames = tmp_path / "P" / "frames"
    frames.mkdir(parents=True)
    for t in range(2):
        Image.fromarray(np.full((8, 8, 3), t, np.uint8)).save(frames / f"{t}.png")
    for out in ("P", "P/frames"):
        res = run("create", out, "--images", "P/frames/*.png", "--overwrite", cwd=tmp_path)
        line = _one_error_line(res)
        assert f"the output {out} contains the input P/frames/" in line
    assert sorted(p.name for p in frames.iterdir()) == ["0.png", "1.png"]


def test_create_existing_output_names_the_option(tmp_path: Path, images) -> None:
    folder, _ = images
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    line = _one_error_line(run("create", str(out), "--images", str(folder), "--no-progress"))
    assert "--overwrite" in line and "overwrite=True" not in line


_SLOW_WRITER = """
import sys, time
import numpy as np
import zarrcrop

def gen():
    for t in range(40):
        time.sleep(0.1)
        yield np.ones((3, 8, 8), np.uint8)

zarrcrop.create_dataset(sys.argv[1], {"gt": gen()}, workers=1, progress=False)
"""


def test_create_while_another_process_writes(tmp_path: Path, images) -> None:
    folder, _ = images
    out = tmp_path / "o"
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(out)])
    try:
        deadline = time.monotonic() + 60  # until the writer has finished a frame
        while not (out / "gt" / ".zarrcrop-done").is_dir() and time.monotonic() < deadline:
            assert writer.poll() is None
            time.sleep(0.01)
        res = run("create", str(out), "--images", str(folder), "--no-progress")
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=60)
    line = _one_error_line(res)
    assert str(out) in line and f"pid {writer.pid}" in line and "--wait" in line


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--crops", "2000000000"), "--crops"),
        (("--threads", "5000"), "--threads"),
        (("--crops", "many"), "--crops"),
    ],
)
def test_bench_bad_arguments(dataset: tuple[Path, np.ndarray], args, names: str) -> None:
    out, _ = dataset
    assert names in _one_error_line(run("bench", str(out), *args))


def test_bench_empty_array(tmp_path: Path) -> None:
    import zarr

    zarr.create_array(str(tmp_path / "e.zarr"), shape=(0, 3, 8, 8), chunks=(1, 3, 8, 8),
                      dtype="uint8", zarr_format=2)  # fmt: skip
    line = _one_error_line(run("bench", str(tmp_path / "e.zarr")))
    assert str(tmp_path / "e.zarr") in line and "empty" in line


def test_bench_warns_when_it_cannot_measure_what_was_asked(
    tmp_path: Path, dataset: tuple[Path, np.ndarray]
) -> None:
    import zarr

    out, _ = dataset
    res = run("bench", str(out), "--crop", "5000", "--crops", "3")
    assert res.returncode == 0, res.stderr
    assert "warning: --crop 5000 is larger than the 64x96 frames" in res.stderr
    assert "64x96 crops" in res.stderr and "no chunk" not in res.stderr
    zarr.create_array(str(tmp_path / "u.zarr"), shape=(2, 3, 64, 64), chunks=(1, 3, 32, 32),
                      dtype="uint8", zarr_format=2)  # fmt: skip
    res = run("bench", str(tmp_path / "u.zarr"), "--crop", "32", "--crops", "3")
    assert res.returncode == 0, res.stderr
    assert "warning: no chunk of" in res.stderr and "fill value" in res.stderr
    assert "fill value" in run("bench", "--help").stdout


def test_create_bad_name_and_workers(tmp_path: Path, images: tuple[Path, np.ndarray]) -> None:
    folder, _ = images
    line = _one_error_line(run("create", str(tmp_path / "o"), "--images", str(folder), "--name",
                               "", "--no-progress"))  # fmt: skip
    assert "array name ''" in line
    line = _one_error_line(run("create", str(tmp_path / "o"), "--images", str(folder),
                               "--workers", "100000"))  # fmt: skip
    assert "--workers" in line
    assert not (tmp_path / "o").exists()
