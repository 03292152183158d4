"""The tutorial's comparison (docs/zarr-tutorial.md, "Zarr vs. PNG / TIFF"), measured.

The same random 960x960 crops of the same real-photo frames (``zcbench.data.photo_frame``, 4K,
RGB uint8) are read from:

- ``png``: one PNG file per frame (Pillow, default compression); a crop decodes the whole
  image, then slices it.
- ``tiff``: one tiled TIFF per frame (tifffile; 512x512 tiles; zstd when ``imagecodecs`` is
  installed, else deflate); a crop reads and decodes only the tiles it overlaps, spread over the
  benchmark's threads.
- ``zarrcrop``: the dataset written by ``zarrcrop.create_dataset`` (defaults: one frame per
  chunk, 960x960 chunks, Blosc zstd clevel 5 bitshuffle), read with ``zarrcrop.open``.

Run: ``python -m pytest bench/test_formats.py`` (``--bench-rounds``, ``--bench-per-round``,
``--bench-threads`` apply). The crops/s of each format and the ratios are printed at the end.
All three readers are checked to return identical crops before timing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zcbench.data import photo_frame
from zcbench.session import Settings

pytest.importorskip("pytest_benchmark")
PIL_Image = pytest.importorskip("PIL.Image")
tifffile = pytest.importorskip("tifffile")

FRAMES = 4
SHAPE = (3, 2160, 3840)
CROP = 960
TIFF_TILE = 512
MAX_ROUNDS = 8  # PNG decodes whole 4K frames: keep the suite short
FORMATS = ("png", "tiff", "zarrcrop")

_rates: dict[str, float] = {}


def _tiff_compression() -> str:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return "zlib"
    return "zstd"


@pytest.fixture(scope="module")
def format_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import zarrcrop

    root = tmp_path_factory.mktemp("formats")
    png, tif = [], []
    compression = _tiff_compression()

    def frames() -> Any:
        for t in range(FRAMES):
            frame = photo_frame(t, SHAPE)
            hwc = np.ascontiguousarray(frame.transpose(1, 2, 0))
            png.append(root / f"frame{t}.png")
            PIL_Image.fromarray(hwc).save(png[-1])
            tif.append(root / f"frame{t}.tif")
            tifffile.imwrite(
                tif[-1], hwc, tile=(TIFF_TILE, TIFF_TILE), compression=compression,
                photometric="rgb",
            )  # fmt: skip
            yield frame

    zarrcrop.create_dataset(root / "data.zarr", {"gt": frames()}, progress=False)
    sizes = {
        "png": sum(os.path.getsize(p) for p in png),
        "tiff": sum(os.path.getsize(p) for p in tif),
        "zarrcrop": sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, fs in os.walk(root / "data.zarr")
            for f in fs
        ),
    }
    return {
        "png": png,
        "tiff": tif,
        "zarr": root / "data.zarr",
        "sizes": sizes,
        "tiff_compression": compression,
    }


def _positions(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    return [
        (
            int(rng.integers(0, FRAMES)),
            int(rng.integers(0, SHAPE[1] - CROP + 1)),
            int(rng.integers(0, SHAPE[2] - CROP + 1)),
        )
        for _ in range(n)
    ]


class PngReader:
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        with PIL_Image.open(self.paths[t]) as im:
            full = np.asarray(im)  # the whole image is decoded
        return np.ascontiguousarray(full[y : y + CROP, x : x + CROP].transpose(2, 0, 1))


class TiffReader:
    """Reads only the tiles a crop overlaps (whole tiles), decoding them on a thread pool."""

    def __init__(self, paths: list[Path], threads: int) -> None:
        self.files = [tifffile.TiffFile(p) for p in paths]
        self.pool = ThreadPoolExecutor(max_workers=threads)

    def close(self) -> None:
        self.pool.shutdown()
        for f in self.files:
            f.close()

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        tf = self.files[t]
        page = tf.pages[0]
        th, tw = page.tilelength, page.tilewidth
        tiles_x = -(-page.imagewidth // tw)
        out = np.empty((CROP, CROP, 3), dtype=np.uint8)
        jobs = []
        for ty in range(y // th, (y + CROP - 1) // th + 1):
            for tx in range(x // tw, (x + CROP - 1) // tw + 1):
                index = ty * tiles_x + tx
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                tf.filehandle.seek(offset)
                jobs.append((ty, tx, index, tf.filehandle.read(count)))

        def decode(job: tuple[int, int, int, bytes]) -> None:
            ty, tx, index, data = job
            tile = page.decode(data, index)[0].reshape(th, tw, 3)
            top, left = ty * th, tx * tw
            r0, r1 = max(top, y), min(top + th, y + CROP)
            c0, c1 = max(left, x), min(left + tw, x + CROP)
            out[r0 - y : r1 - y, c0 - x : c1 - x] = tile[r0 - top : r1 - top, c0 - left : c1 - left]

        list(self.pool.map(decode, jobs))
        return np.ascontiguousarray(out.transpose(2, 0, 1))


class ZarrcropReader:
    def __init__(self, path: Path) -> None:
        import zarrcrop

        self.array = zarrcrop.open(path, "gt")

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        return self.array[t, :, y : y + CROP, x : x + CROP]


def _reader(fmt: str, data: dict[str, Any], threads: int) -> Any:
    if fmt == "png":
        return PngReader(data["png"])
    if fmt == "tiff":
        return TiffReader(data["tiff"], threads)
    return ZarrcropReader(data["zarr"])


@pytest.fixture(scope="module", autouse=True)
def _print_ratios(request: pytest.FixtureRequest, format_data: dict[str, Any]) -> Any:
    yield
    if not _rates:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter is not None else print
    sizes = format_data["sizes"]
    write("")
    write(
        f"Zarr vs PNG / TIFF: random {CROP}x{CROP} crops of {FRAMES} photo frames "
        f"{SHAPE[2]}x{SHAPE[1]} (TIFF: {TIFF_TILE}x{TIFF_TILE} tiles, "
        f"{format_data['tiff_compression']})"
    )
    for fmt in FORMATS:
        if fmt in _rates:
            write(f"  {fmt:<9} {_rates[fmt]:8.1f} crops/s   {sizes[fmt] / 2**20:7.1f} MiB on disk")
    if "zarrcrop" in _rates:
        for fmt in ("png", "tiff"):
            if fmt in _rates:
                write(f"  zarrcrop / {fmt}: {_rates['zarrcrop'] / _rates[fmt]:.1f}x")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.benchmark(group="formats")
def test_format_crops(
    benchmark: Any, fmt: str, format_data: dict[str, Any], bench_settings: Settings
) -> None:
    per_round = bench_settings.per_round
    rounds = min(bench_settings.rounds, MAX_ROUNDS)
    batches = [_positions(per_round, seed=i) for i in range(rounds)]
    reader = _reader(fmt, format_data, bench_settings.threads)
    try:
        reference = ZarrcropReader(format_data["zarr"]) if fmt != "zarrcrop" else None
        for t, y, x in batches[0][:2]:
            got = reader.crop(t, y, x)
            expected = photo_frame(t, SHAPE)[:, y : y + CROP, x : x + CROP]
            assert np.array_equal(got, expected), f"{fmt} returned different pixels"
            if reference is not None:
                assert np.array_equal(reference.crop(t, y, x), got)

        state = {"i": 0}

        def one_round() -> None:
            batch = batches[state["i"] % rounds]
            state["i"] += 1
            for t, y, x in batch:
                reader.crop(t, y, x)

        benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1)
        _rates[fmt] = per_round / benchmark.stats.stats.mean
        benchmark.extra_info.update(
            {
                "format": fmt,
                "crops_per_round": per_round,
                "crops_per_s": _rates[fmt],
                "bytes_on_disk": format_data["sizes"][fmt],
            }
        )
    finally:
        if isinstance(reader, TiffReader):
            reader.close()
