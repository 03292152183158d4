"""``zarrcrop demo``: write the tutorial's 4K dataset, read random crops with both libraries."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numcodecs
import numpy as np
import numpy.typing as npt
import zarr

from .. import get_num_threads, open_group, set_num_threads
from .common import (
    WARMUP_CROPS,
    add_crops,
    add_seed,
    disk_usage,
    error,
    format_bytes,
    positive_int,
    thread_count,
)
from .synthetic import PhotoFrames

# The tutorial's demo dataset (docs: zarr-tutorial.md, "Creating a Zarr Dataset").
DEMO_HEIGHT = 2160
DEMO_WIDTH = 3840
DEMO_CHANNELS = 3
DEMO_CHUNK = 960
DEMO_ARRAY = "gt"
# Marker attribute written on the demo group, so that ``--path`` never overwrites anything that
# the demo did not write itself.
DEMO_MARKER = "zarrcrop_demo"

#: A crop's selection: gt[t, :, rows, cols].
Crop = tuple[int, slice, slice, slice]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command to ``subparsers``."""
    p = subparsers.add_parser(
        "demo",
        help="write the tutorial's 4K demo dataset and compare random crop reads with zarr-python",
        description=(
            "Write the tutorial's demo dataset (a zarr v2 group with an array 'gt' of shape "
            f"(FRAMES, {DEMO_CHANNELS}, {DEMO_HEIGHT}, {DEMO_WIDTH}) uint8, chunks "
            f"(1, {DEMO_CHANNELS}, {DEMO_CHUNK}, {DEMO_CHUNK}), Blosc zstd clevel 5 bitshuffle) "
            "with zarr-python, read the same random crops with zarrcrop and with zarr-python, "
            "check that every crop is identical, and print crops/s for both."
        ),
    )
    p.add_argument(
        "--frames", type=positive_int, default=4, metavar="N", help="frames to write (default 4)"
    )
    add_crops(p)
    p.add_argument(
        "--crop-size",
        type=positive_int,
        default=DEMO_CHUNK,
        metavar="N",
        help=f"side of the square crops, at most {DEMO_HEIGHT} (default {DEMO_CHUNK})",
    )
    p.add_argument(
        "--path",
        metavar="DIR",
        default=None,
        help=(
            "write the dataset to DIR and keep it (default: a temporary directory, removed "
            "afterwards); an existing DIR is overwritten only if an earlier demo wrote it"
        ),
    )
    p.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        metavar="N",
        help="zarrcrop decode threads (default: zarrcrop.get_num_threads())",
    )
    add_seed(p)
    p.add_argument(
        "--content",
        choices=("photo", "random"),
        default="photo",
        help=(
            "frame content: 'photo' (smooth structures plus mild noise, compresses like a "
            "photo; default) or 'random' (uniform noise, incompressible, as in the tutorial)"
        ),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``zarrcrop demo`` with the parsed ``args``; returns the exit status."""
    if args.crop_size > min(DEMO_HEIGHT, DEMO_WIDTH):
        return error(f"--crop-size must be at most {min(DEMO_HEIGHT, DEMO_WIDTH)}", code=2)
    if args.path is None:
        with tempfile.TemporaryDirectory(prefix="zarrcrop-demo-") as tmp:
            return _demo(Path(tmp) / "demo.zarr", args, keep=False)
    path = Path(args.path).expanduser()
    reason = _demo_path_is_reusable(path)
    if reason is not None:
        return error(f"--path: {reason}", code=2)
    return _demo(path, args, keep=True)


def _demo_path_is_reusable(path: Path) -> str | None:
    """None if ``path`` may be (over)written by the demo, else the reason why not."""
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} exists and is not a directory"
    if not any(path.iterdir()):
        return None
    try:
        group = zarr.open_group(str(path), mode="r")
        if group.attrs.get(DEMO_MARKER):
            return None
    except Exception:  # not a readable zarr group: certainly not ours
        pass
    return (
        f"{path} exists and was not written by 'zarrcrop demo'; "
        "refusing to overwrite it (pick a new or empty directory)"
    )


def _write_demo(path: Path, args: argparse.Namespace) -> numcodecs.Blosc:
    """Write the demo group at ``path`` with zarr-python; returns the compressor used."""
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs[DEMO_MARKER] = True
    shape = (args.frames, DEMO_CHANNELS, DEMO_HEIGHT, DEMO_WIDTH)
    gt = root.create_array(
        DEMO_ARRAY,
        shape=shape,
        chunks=(1, DEMO_CHANNELS, DEMO_CHUNK, DEMO_CHUNK),
        dtype="uint8",
        compressors=compressor,
    )
    rng = np.random.default_rng([args.seed, 1])
    photo = PhotoFrames(rng, *shape[1:]) if args.content == "photo" else None
    for t in range(args.frames):
        if photo is not None:
            frame = photo.frame(t)
        else:
            frame = rng.integers(0, 256, size=shape[1:], dtype=np.uint8)
        gt[t] = frame
        del frame  # one 4K frame in memory at a time
    return compressor


def _demo(path: Path, args: argparse.Namespace, *, keep: bool) -> int:
    """Write the dataset at ``path``, then read and compare the crops; returns the exit status."""
    if args.threads is not None:
        set_num_threads(args.threads)

    frames, size = args.frames, args.crop_size
    shape = (frames, DEMO_CHANNELS, DEMO_HEIGHT, DEMO_WIDTH)
    where = str(path) if keep else "a temporary directory"
    print(f"Writing {frames} frame(s) of {args.content} content with zarr-python to {where} ...")
    t0 = time.perf_counter()
    compressor = _write_demo(path, args)
    written_s = time.perf_counter() - t0

    nbytes = int(np.prod(shape))
    on_disk = disk_usage(path / DEMO_ARRAY)
    print(
        f"  {DEMO_ARRAY}: shape {shape} uint8, chunks (1, {DEMO_CHANNELS}, {DEMO_CHUNK}, "
        f"{DEMO_CHUNK}), zarr v2"
    )
    print(f"  compressor: {compressor!r}")
    ratio = nbytes / on_disk if on_disk else float("inf")
    print(
        f"  size on disk: {format_bytes(on_disk)} for {format_bytes(nbytes)} of data "
        f"(compression ratio {ratio:.2f}x), written in {written_s:.1f} s"
    )

    zc = open_group(str(path))[DEMO_ARRAY]
    zp = cast("zarr.Array[Any]", zarr.open_group(str(path), mode="r")[DEMO_ARRAY])
    if zc.native:
        print(f"zarrcrop: native reads, {get_num_threads()} thread(s)")
    else:
        print(f"zarrcrop: NOT native, falls back to zarr-python ({zc.fallback_reason})")

    crops = _random_crops(args.seed, args.crops, frames, size)
    n = len(crops)

    # Warm-up (not timed): first reads open files, start thread pools, fill caches.
    for sel in crops[:WARMUP_CROPS]:
        zc[sel]
        zp[sel]

    print(
        f"Reading {n} random {size}x{size} crops (gt[t, :, top:top+{size}, "
        f"left:left+{size}], seed {args.seed}) with both ..."
    )
    mismatches = _compare_reads({"zarrcrop": zc, "zarr-python": zp}, crops)
    if mismatches:
        _report_mismatches(mismatches, n)
        return 1
    print(f"OK: all {n} crops are identical to zarr-python's.")
    if keep:
        print(f"Dataset kept at {path}")
    return 0


def _random_crops(seed: int, n: int, frames: int, size: int) -> list[Crop]:
    """``n`` random ``size`` x ``size`` crops of the demo array, drawn from ``seed``."""
    rng = np.random.default_rng([seed, 2])
    ts = rng.integers(0, frames, size=n)
    tops = rng.integers(0, DEMO_HEIGHT - size + 1, size=n)
    lefts = rng.integers(0, DEMO_WIDTH - size + 1, size=n)
    return [
        (int(t), slice(None), slice(int(top), int(top) + size), slice(int(left), int(left) + size))
        for t, top, left in zip(ts, tops, lefts, strict=True)
    ]


#: A crop that differs: its selection, zarrcrop's read, zarr-python's read.
Mismatch = tuple[Crop, npt.NDArray[Any], npt.NDArray[Any]]


def _compare_reads(readers: dict[str, Any], crops: list[Crop]) -> list[Mismatch]:
    """Time both readers over ``crops``, print crops/s and speedup; returns the crops that differ.

    Each crop is read by both libraries, one after the other (which goes first alternates),
    and only the reads are timed; the pair is compared right away so memory stays bounded.
    """
    n = len(crops)
    elapsed = dict.fromkeys(readers, 0.0)
    mismatches: list[Mismatch] = []
    for i, sel in enumerate(crops):
        got: dict[str, npt.NDArray[Any]] = {}
        order = list(readers) if i % 2 == 0 else list(reversed(readers))
        for name in order:
            t0 = time.perf_counter()
            got[name] = np.asarray(readers[name][sel])
            elapsed[name] += time.perf_counter() - t0
        a, b = got["zarrcrop"], got["zarr-python"]
        if a.dtype != b.dtype or not np.array_equal(a, b):
            mismatches.append((sel, a, b))

    rate = {name: n / s if s > 0 else float("inf") for name, s in elapsed.items()}
    for name in readers:
        print(f"  {name:<12} {rate[name]:8.1f} crops/s")
    print(f"  {'speedup':<12} {rate['zarrcrop'] / rate['zarr-python']:8.2f}x")
    return mismatches


def _report_mismatches(mismatches: list[Mismatch], n: int) -> None:
    """Say on stderr how many of the ``n`` crops differ, and how, for the first five."""
    sys.stdout.flush()  # the figures above come before the failure
    print(
        f"FAILED: {len(mismatches)} of {n} crops differ between zarrcrop and zarr-python",
        file=sys.stderr,
    )
    for sel, a, b in mismatches[:5]:
        t, _, rows, cols = sel
        detail = f"dtype {a.dtype}/{b.dtype}, shape {a.shape}/{b.shape}"
        if a.shape == b.shape:
            detail += f", {int(np.count_nonzero(a != b))} values differ"
        print(
            f"  gt[{t}, :, {rows.start}:{rows.stop}, {cols.start}:{cols.stop}]: {detail}",
            file=sys.stderr,
        )
