"""``zarrcrop create``: convert image files to a dataset laid out for fast crops."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..create import DatasetLockedError, WriteCheckError, create_dataset, image_files
from .common import disk_usage, error, format_bytes, positive_int, seconds, thread_count


def levels_arg(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated downscale factors, each >= 2 (``'2,3'``)."""
    try:
        levels = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated factors like 2,3, got {text!r}"
        ) from None
    if not levels or any(f < 2 for f in levels):
        raise argparse.ArgumentTypeError(f"levels are downscale factors >= 2, got {text!r}")
    return levels


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``create`` command to ``subparsers``."""
    p = subparsers.add_parser(
        "create",
        help="convert image files (PNG, JPEG, TIFF, ...) to a dataset laid out for fast crops",
        description=(
            "Convert a sequence of image files into a zarr dataset at OUT with one (T, C, H, W) "
            "array: one frame per chunk, chunks of about the crop size, Blosc zstd (or lz4) "
            "with a block size chosen for partial reads. Files are sorted by name (naturally: "
            "frame2 before frame10). The conversion is resumable: run the same command again "
            "after an interruption and it writes only the missing frames."
        ),
    )
    p.add_argument("out", metavar="OUT", help="directory of the dataset to write")
    p.add_argument(
        "--images",
        required=True,
        metavar="GLOB",
        help="image files: a glob pattern (quote it: 'frames/*.png') or a directory",
    )
    p.add_argument("--name", default="gt", help="array name (default gt; may contain '/')")
    p.add_argument(
        "--crop-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="expected crop side; chunks are at most N x N (default 960)",
    )
    p.add_argument(
        "--levels",
        type=levels_arg,
        default=None,
        metavar="F,F",
        help="also write area-downscaled copies lr/<H>p/rgb by these factors, e.g. 2,3",
    )
    p.add_argument(
        "--compressor",
        choices=("zstd", "lz4"),
        default="zstd",
        help="zstd: Blosc zstd clevel 5 bitshuffle (default); lz4: Blosc lz4 clevel 5, faster",
    )
    p.add_argument("--format", type=int, choices=(2, 3), default=2, help="zarr format (default 2)")
    p.add_argument(
        "--shards",
        type=positive_int,
        default=None,
        metavar="N",
        help="zarr v3 only: frames per shard file",
    )
    p.add_argument("--workers", type=thread_count, default=None, metavar="N", help="writer threads")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace whatever is at OUT (never allowed when OUT is, holds or lies inside the "
        "images)",
    )
    p.add_argument(
        "--wait",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="if another process is writing OUT, wait up to SECONDS for it to finish, then "
        "resume (default 0: refuse at once, naming that process)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _cli_hint(message: str) -> str:
    """The Python API's hints in command-line terms."""
    return message.replace("overwrite=True", "--overwrite")


def run(args: argparse.Namespace) -> int:
    """Run ``zarrcrop create`` with the parsed ``args``; returns the exit status."""
    if args.shards is not None and args.format != 3:
        return error("--shards needs --format 3", code=2)
    try:
        images = image_files(os.path.expanduser(args.images))
    except ImportError as exc:  # Pillow or tifffile missing: our message says what to install
        return error(str(exc), code=2)
    except (FileNotFoundError, ValueError) as exc:
        return error(str(exc), code=2)
    except OSError as exc:
        text = str(exc)
        return error(text if "cannot read image" in text else f"cannot read images: {text}", 2)
    out = Path(args.out).expanduser()
    c, h, w = images.frame_shape
    print(
        f"Converting {len(images)} image(s) of {w}x{h} with {c} channel(s) {images.dtype} "
        f"to {out} ..."
    )
    t0 = time.perf_counter()
    try:
        report = create_dataset(
            out,
            {args.name: images},
            crop_size=args.crop_size,
            compressor=args.compressor,
            zarr_format=args.format,
            shards=args.shards,
            levels=args.levels,
            level_source=args.name,
            workers=args.workers,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            wait=args.wait,
        )
    except DatasetLockedError as exc:
        return error(
            f"{exc.path} is being written by another process ({exc.holder}; lock file "
            f"{exc.lock_file}); let it finish, or pass --wait SECONDS to resume after it",
            code=2,
        )
    except FileExistsError as exc:
        text = _cli_hint(str(exc))
        return error(text if "--overwrite" in text else f"{text} (use --overwrite)", code=2)
    except (ValueError, OSError, ImportError, WriteCheckError) as exc:
        return error(_cli_hint(str(exc)), code=2)
    elapsed = time.perf_counter() - t0
    for rep in report.arrays.values():
        print(
            f"  {rep.name}: shape {rep.shape} {rep.dtype}, chunks {rep.chunks}"
            + (f", shards {rep.shards}" if rep.shards else "")
            + f", {rep.frames_written} frame(s) written"
            + (f", {rep.frames_skipped} already done" if rep.frames_skipped else "")
        )
    size = disk_usage(out)
    print(f"Done in {elapsed:.1f} s; {format_bytes(size)} on disk. See: zarrcrop info {out}")
    return 0
