"""Command line interface: ``zarrcrop COMMAND ...`` (also ``python -m zarrcrop``).

Each subcommand is registered by one ``_add_<name>_command(subparsers)`` function listed in
``_COMMANDS``; it adds its parser and sets ``func`` (called with the parsed namespace, returns the
exit code). To add a command (``create``, ``info``, ``bench`` ...), write such a function and
append it to ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# The tutorial's demo dataset (docs: zarr-tutorial.md, "Creating a Zarr Dataset").
DEMO_HEIGHT = 2160
DEMO_WIDTH = 3840
DEMO_CHANNELS = 3
DEMO_CHUNK = 960
DEMO_ARRAY = "gt"
# Marker attribute written on the demo group, so that ``--path`` never overwrites anything that
# the demo did not write itself.
DEMO_MARKER = "zarrcrop_demo"
WARMUP_CROPS = 2
#: Most crops a bench or demo run reads (each crop's selection is held in memory).
MAX_CROPS = 100_000


def _package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return version("zarrcrop")
    except PackageNotFoundError:
        return "unknown"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _crop_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CROPS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_CROPS} crops, got {text!r}")
    return value


def _thread_count(text: str) -> int:
    from . import MAX_THREADS

    value = _positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_THREADS} threads (zarrcrop's limit), got {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``zarrcrop: error: ...``, exit 2), no usage dump."""

    def error(self, message: str) -> Any:  # argparse declares NoReturn
        self.exit(2, f"zarrcrop: error: {message} (see '{self.prog} --help')\n")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _error(message: str, code: int = 1) -> int:
    print(f"zarrcrop: error: {message}", file=sys.stderr)
    return code


def _warn(message: str) -> None:
    print(f"zarrcrop: warning: {message}", file=sys.stderr)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _disk_usage(path: Path) -> int:
    """Total size in bytes of the regular files under ``path``."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def _add_demo_command(subparsers: Any) -> None:
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
        "--frames", type=_positive_int, default=4, metavar="N", help="frames to write (default 4)"
    )
    p.add_argument(
        "--crops",
        type=_crop_count,
        default=50,
        metavar="N",
        help=f"crops to read (default 50, at most {MAX_CROPS})",
    )
    p.add_argument(
        "--crop-size",
        type=_positive_int,
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
        type=_thread_count,
        default=None,
        metavar="N",
        help="zarrcrop decode threads (default: zarrcrop.get_num_threads())",
    )
    p.add_argument(
        "--seed", type=_non_negative_int, default=0, metavar="S", help="random seed (default 0)"
    )
    p.add_argument(
        "--content",
        choices=("photo", "random"),
        default="photo",
        help=(
            "frame content: 'photo' (smooth structures plus mild noise, compresses like a "
            "photo; default) or 'random' (uniform noise, incompressible, as in the tutorial)"
        ),
    )
    p.set_defaults(func=_run_demo)


class _PhotoFrames:
    """Photo-like uint8 frames of shape (C, H, W) from NumPy alone, one frame at a time.

    A frame is a sum of a brightness gradient, a few low-frequency sinusoids (shared luminance
    plus weaker per-channel colour), a few flat-shaded rectangles giving hard edges, and mild
    per-pixel noise. The sinusoids and rectangles drift from frame to frame like a slow camera
    pan. Sinusoids are evaluated separably (sin(u + v) = sin u cos v + cos u sin v), so a 4K frame
    costs a few full-size float32 operations.
    """

    def __init__(self, rng: Any, channels: int, height: int, width: int) -> None:
        import numpy as np

        self.np = np
        self.rng = rng
        self.c, self.h, self.w = channels, height, width
        self.x = np.linspace(0.0, 1.0, width, dtype=np.float32)
        self.y = np.linspace(0.0, 1.0, height, dtype=np.float32)

        def waves(n: int, amp: tuple[float, float]) -> list[tuple[float, ...]]:
            return [
                (
                    float(rng.uniform(0.5, 6.0)) * rng.choice((-1.0, 1.0)),  # cycles across x
                    float(rng.uniform(0.5, 5.0)) * rng.choice((-1.0, 1.0)),  # cycles across y
                    float(rng.uniform(0.0, 2 * np.pi)),  # phase
                    float(rng.uniform(*amp)),  # amplitude
                    float(rng.uniform(-0.15, 0.15)),  # phase drift per frame
                )
                for _ in range(n)
            ]

        self.luma = waves(4, (12.0, 30.0))
        self.chroma = [waves(2, (4.0, 12.0)) for _ in range(channels)]
        self.base = rng.uniform(70.0, 150.0, size=channels)
        self.grad = rng.uniform(-40.0, 40.0, size=(channels, 2))
        self.rects = [
            (
                int(rng.integers(0, height)),
                int(rng.integers(0, width)),
                int(rng.integers(height // 16, height // 3)),
                int(rng.integers(width // 16, width // 4)),
                rng.uniform(-45.0, 45.0, size=channels),
                int(rng.integers(-12, 13)),  # vertical drift per frame, pixels
                int(rng.integers(-24, 25)),  # horizontal drift per frame, pixels
            )
            for _ in range(6)
        ]

    def _add_waves(self, img: Any, waves: list[tuple[float, ...]], t: int) -> None:
        np = self.np
        two_pi = np.float32(2 * np.pi)
        for fx, fy, phase, amp, drift in waves:
            u = two_pi * np.float32(fx) * self.x + np.float32(phase + drift * t)
            v = two_pi * np.float32(fy) * self.y
            a = np.float32(amp)
            img += (a * np.sin(v))[:, None] * np.cos(u)[None, :]
            img += (a * np.cos(v))[:, None] * np.sin(u)[None, :]

    def frame(self, t: int) -> Any:
        np = self.np
        c, h, w = self.c, self.h, self.w
        luma = np.zeros((h, w), dtype=np.float32)
        self._add_waves(luma, self.luma, t)
        out = np.empty((c, h, w), dtype=np.uint8)
        for ch in range(c):
            img = luma.copy()
            gx, gy = self.grad[ch]
            img += np.float32(self.base[ch]) + np.float32(gx) * self.x[None, :]
            img += (np.float32(gy) * self.y)[:, None]
            self._add_waves(img, self.chroma[ch], t)
            for top, left, rh, rw, shade, dy, dx in self.rects:
                r0 = (top + dy * t) % h
                c0 = (left + dx * t) % w
                img[r0 : r0 + rh, c0 : c0 + rw] += np.float32(shade[ch])
            img += self.rng.integers(-3, 4, size=(h, w), dtype=np.int8)
            np.clip(img, 0.0, 255.0, out=img)
            np.rint(img, out=img)
            out[ch] = img
        return out


def _demo_path_is_reusable(path: Path) -> str | None:
    """None if ``path`` may be (over)written by the demo, else the reason why not."""
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} exists and is not a directory"
    if not any(path.iterdir()):
        return None
    try:
        import zarr

        group = zarr.open_group(str(path), mode="r")
        if group.attrs.get(DEMO_MARKER):
            return None
    except Exception:
        pass
    return (
        f"{path} exists and was not written by 'zarrcrop demo'; "
        "refusing to overwrite it (pick a new or empty directory)"
    )


def _write_demo(path: Path, args: argparse.Namespace) -> Any:
    import numcodecs
    import numpy as np
    import zarr

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
    photo = _PhotoFrames(rng, *shape[1:]) if args.content == "photo" else None
    for t in range(args.frames):
        if photo is not None:
            frame = photo.frame(t)
        else:
            frame = rng.integers(0, 256, size=shape[1:], dtype=np.uint8)
        gt[t] = frame
        del frame
    return compressor


def _run_demo(args: argparse.Namespace) -> int:
    if args.crop_size > min(DEMO_HEIGHT, DEMO_WIDTH):
        return _error(f"--crop-size must be at most {min(DEMO_HEIGHT, DEMO_WIDTH)}", code=2)
    if args.path is None:
        with tempfile.TemporaryDirectory(prefix="zarrcrop-demo-") as tmp:
            return _demo(Path(tmp) / "demo.zarr", args, keep=False)
    path = Path(args.path).expanduser()
    reason = _demo_path_is_reusable(path)
    if reason is not None:
        return _error(f"--path: {reason}", code=2)
    return _demo(path, args, keep=True)


def _demo(path: Path, args: argparse.Namespace, *, keep: bool) -> int:
    import numpy as np
    import zarr

    from . import get_num_threads, open_group, set_num_threads

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
    on_disk = _disk_usage(path / DEMO_ARRAY)
    print(
        f"  {DEMO_ARRAY}: shape {shape} uint8, chunks (1, {DEMO_CHANNELS}, {DEMO_CHUNK}, "
        f"{DEMO_CHUNK}), zarr v2"
    )
    print(f"  compressor: {compressor!r}")
    ratio = nbytes / on_disk if on_disk else float("inf")
    print(
        f"  size on disk: {_format_bytes(on_disk)} for {_format_bytes(nbytes)} of data "
        f"(compression ratio {ratio:.2f}x), written in {written_s:.1f} s"
    )

    zc = open_group(str(path))[DEMO_ARRAY]
    zp = zarr.open_group(str(path), mode="r")[DEMO_ARRAY]
    if zc.native:
        print(f"zarrcrop: native reads, {get_num_threads()} thread(s)")
    else:
        print(f"zarrcrop: NOT native, falls back to zarr-python ({zc.fallback_reason})")

    rng = np.random.default_rng([args.seed, 2])
    n = args.crops
    ts = rng.integers(0, frames, size=n)
    tops = rng.integers(0, DEMO_HEIGHT - size + 1, size=n)
    lefts = rng.integers(0, DEMO_WIDTH - size + 1, size=n)
    crops = [
        (int(t), slice(None), slice(int(top), int(top) + size), slice(int(left), int(left) + size))
        for t, top, left in zip(ts, tops, lefts, strict=True)
    ]

    # Warm-up (not timed): first reads open files, start thread pools, fill caches.
    for sel in crops[:WARMUP_CROPS]:
        zc[sel]
        zp[sel]

    # Each crop is read by both libraries, one after the other (which goes first alternates),
    # and only the reads are timed; the pair is compared right away so memory stays bounded.
    print(
        f"Reading {n} random {size}x{size} crops (gt[t, :, top:top+{size}, "
        f"left:left+{size}], seed {args.seed}) with both ..."
    )
    readers = {"zarrcrop": zc, "zarr-python": zp}
    elapsed = dict.fromkeys(readers, 0.0)
    mismatches = []
    for i, sel in enumerate(crops):
        got: dict[str, Any] = {}
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

    if mismatches:
        sys.stdout.flush()
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
        return 1
    print(f"OK: all {n} crops are identical to zarr-python's.")
    if keep:
        print(f"Dataset kept at {path}")
    return 0


# --------------------------------------------------------------------------------------------
# create
# --------------------------------------------------------------------------------------------


def _levels_arg(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated factors like 2,3, got {text!r}"
        ) from None
    if not levels or any(f < 2 for f in levels):
        raise argparse.ArgumentTypeError(f"levels are downscale factors >= 2, got {text!r}")
    return levels


def _add_create_command(subparsers: Any) -> None:
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
        type=_positive_int,
        default=None,
        metavar="N",
        help="expected crop side; chunks are at most N x N (default 960)",
    )
    p.add_argument(
        "--levels",
        type=_levels_arg,
        default=None,
        metavar="F,F",
        help="also write area-downscaled copies lr/<H>x<W>/rgb by these factors, e.g. 2,3",
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
        type=_positive_int,
        default=None,
        metavar="N",
        help="zarr v3 only: frames per shard file",
    )
    p.add_argument(
        "--workers", type=_thread_count, default=None, metavar="N", help="writer threads"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace whatever is at OUT (never allowed when OUT is, holds or lies inside the "
        "images)",
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="if another process is writing OUT, wait up to SECONDS for it to finish, then "
        "resume (default 0: refuse at once, naming that process)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_create)


def _cli_hint(message: str) -> str:
    """The Python API's hints in command-line terms."""
    return message.replace("overwrite=True", "--overwrite")


def _run_create(args: argparse.Namespace) -> int:
    from .create import DatasetLockedError, WriteCheckError, create_dataset, image_files

    if args.shards is not None and args.format != 3:
        return _error("--shards needs --format 3", code=2)
    try:
        images = image_files(os.path.expanduser(args.images))
    except ImportError as exc:  # Pillow or tifffile missing: our message says what to install
        return _error(str(exc), code=2)
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc), code=2)
    except OSError as exc:
        text = str(exc)
        return _error(text if "cannot read image" in text else f"cannot read images: {text}", 2)
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
        return _error(
            f"{exc.path} is being written by another process ({exc.holder}; lock file "
            f"{exc.lock_file}); let it finish, or pass --wait SECONDS to resume after it",
            code=2,
        )
    except FileExistsError as exc:
        text = _cli_hint(str(exc))
        return _error(text if "--overwrite" in text else f"{text} (use --overwrite)", code=2)
    except (ValueError, OSError, ImportError, WriteCheckError) as exc:
        return _error(_cli_hint(str(exc)), code=2)
    elapsed = time.perf_counter() - t0
    for rep in report.arrays.values():
        print(
            f"  {rep.name}: shape {rep.shape} {rep.dtype}, chunks {rep.chunks}"
            + (f", shards {rep.shards}" if rep.shards else "")
            + f", {rep.frames_written} frame(s) written"
            + (f", {rep.frames_skipped} already done" if rep.frames_skipped else "")
        )
    size = _disk_usage(out)
    print(f"Done in {elapsed:.1f} s; {_format_bytes(size)} on disk. See: zarrcrop info {out}")
    return 0


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def _add_info_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "info",
        help="show a dataset's tree: shapes, dtypes, chunks, codecs, sizes, native or not",
        description=(
            "Print the tree of the zarr group (or array) at PATH: for each array its shape, "
            "dtype, chunks (and shards), codecs, compression ratio, size on disk, file count, "
            "and whether zarrcrop reads it natively (if not, why)."
        ),
    )
    p.add_argument("path", metavar="PATH", help="a zarr group or array directory")
    p.set_defaults(func=_run_info)


def _codecs_text(arr: Any) -> str:
    meta = arr.metadata
    if int(meta.zarr_format) == 2:
        parts = [repr(f) for f in (meta.filters or ())]
        parts.append(repr(meta.compressor) if meta.compressor is not None else "no compressor")
        return ", ".join(parts)
    return ", ".join(_v3_codec_text(c) for c in meta.codecs)


def _v3_codec_text(codec: Any) -> str:
    inner = getattr(codec, "codecs", None)
    if inner is not None and hasattr(codec, "chunk_shape"):
        return (
            f"sharding(inner chunks {tuple(codec.chunk_shape)}: "
            + ", ".join(_v3_codec_text(c) for c in inner)
            + ")"
        )
    name = type(codec).__name__
    if name == "BloscCodec":
        shuffle = getattr(codec.shuffle, "value", codec.shuffle)
        cname = getattr(codec.cname, "value", codec.cname)
        return f"blosc({cname}, clevel {codec.clevel}, {shuffle}, blocksize {codec.blocksize})"
    return name.removesuffix("Codec").lower()


def _dir_stats(path: Path) -> tuple[int, int]:
    total = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def _run_info(args: argparse.Namespace) -> int:
    import numpy as np
    import zarr

    from . import open as open_array

    path = Path(args.path).expanduser()
    if not path.exists():
        return _error(f"{path} does not exist", code=2)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        return _error(f"{path} is not a zarr group or array ({exc.__class__.__name__})", code=2)

    def show_array(arr: Any, label: str, indent: str) -> None:
        where = path / arr.path if arr.path else path
        size, files = _dir_stats(where)
        nbytes = int(np.prod(arr.shape)) * arr.dtype.itemsize
        ratio = f"{nbytes / size:.2f}x" if size else "n/a"
        crop = open_array(arr)
        how = "native" if crop.native else f"falls back to zarr-python: {crop.fallback_reason}"
        shards = getattr(arr, "shards", None)
        print(f"{indent}{label}  {arr.shape} {arr.dtype}  (zarr v{arr.metadata.zarr_format})")
        sub = indent + "    "
        print(f"{sub}chunks {tuple(arr.chunks)}" + (f", shards {tuple(shards)}" if shards else ""))
        print(f"{sub}codecs: {_codecs_text(arr)}")
        print(
            f"{sub}{_format_bytes(nbytes)} of data, {_format_bytes(size)} on disk in {files} "
            f"file(s), compression ratio {ratio}"
        )
        print(f"{sub}reads: {how}")

    def show_group(group: Any, label: str, indent: str) -> None:
        print(f"{indent}{label}  (group, zarr v{group.metadata.zarr_format})")
        for name, child in sorted(group.members(), key=lambda kv: kv[0]):
            if isinstance(child, zarr.Array):
                show_array(child, name, indent + "  ")
            else:
                show_group(child, name + "/", indent + "  ")

    if isinstance(node, zarr.Array):
        show_array(node, str(path), "")
    else:
        show_group(node, str(path), "")
    size, files = _dir_stats(path)
    print(f"total: {_format_bytes(size)} on disk in {files} file(s)")
    return 0


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------


def _add_bench_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="crops/s of zarrcrop vs zarr-python on your own dataset, and layout advice",
        description=(
            "Read the same random square crops (over the last two axes; one index of the first "
            "axis, the others whole) from an array of the dataset at PATH with zarrcrop and "
            "zarr-python, check they are identical, print crops/s for both and the decode bound "
            "(the CPU time to decode what the crops need, spread over zarrcrop's threads), and "
            "advise when the chunking does not fit the crop size. Warnings (on stderr) say when "
            "the figures do not measure what was asked: a crop larger than the frames (whole "
            "frames are read instead) or chunks never written (reads return the fill value "
            "without decoding anything). An empty array is an error."
        ),
    )
    p.add_argument("path", metavar="PATH", help="a zarr group or array directory")
    p.add_argument(
        "--array", default=None, metavar="NAME", help="array in the group (default gt or the first)"
    )
    p.add_argument(
        "--crop",
        type=_positive_int,
        default=960,
        metavar="N",
        help="crop side (default 960); larger than the frames: whole frames, with a warning",
    )
    p.add_argument(
        "--crops",
        type=_crop_count,
        default=50,
        metavar="N",
        help=f"crops to read (default 50, at most {MAX_CROPS})",
    )
    p.add_argument(
        "--threads", type=_thread_count, default=None, metavar="N", help="zarrcrop threads"
    )
    p.add_argument(
        "--seed", type=_non_negative_int, default=0, metavar="S", help="random seed (default 0)"
    )
    p.set_defaults(func=_run_bench)


def _pick_array(path: Path, name: str | None) -> Any:
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise ValueError(
            f"{path} is not a zarr group or array ({exc.__class__.__name__})"
        ) from None
    if isinstance(node, zarr.Array):
        if name is not None:
            raise ValueError(f"{path} is an array; --array does not apply")
        return node
    if name is not None:
        try:
            child = node[name]
        except KeyError:
            raise ValueError(f"no array {name!r} in {path}") from None
        if not isinstance(child, zarr.Array):
            raise ValueError(f"{name!r} in {path} is a group, not an array")
        return child
    if "gt" in node and isinstance(node["gt"], zarr.Array):
        return node["gt"]
    found = sorted(((k, a) for k, a in _walk_arrays(node) if a.ndim >= 2), key=lambda kv: kv[0])
    if not found:
        raise ValueError(f"no array with 2 or more dimensions in {path}")
    return found[0][1]


def _walk_arrays(group: Any, prefix: str = "") -> Any:
    import zarr

    for name, child in group.members():
        if isinstance(child, zarr.Array):
            yield prefix + name, child
        else:
            yield from _walk_arrays(child, prefix + name + "/")


def _advice(
    shape: tuple[int, ...], chunks: tuple[int, ...], crop_shape: tuple[int, ...]
) -> list[str]:
    notes = []
    ch, cw = chunks[-2], chunks[-1]
    kh, kw = crop_shape[-2], crop_shape[-1]
    per_crop = (math.ceil(kh / ch) + 1) * (math.ceil(kw / cw) + 1)
    if ch * 4 <= kh or cw * 4 <= kw:
        notes.append(
            f"chunks ({ch}x{cw}) are much smaller than the crop ({kh}x{kw}): a crop touches up "
            f"to {per_crop} chunks (files). Re-chunk to about the crop size, e.g. "
            f"'zarrcrop create --crop-size {kh}'."
        )
    if ch >= 3 * kh and cw >= 3 * kw:
        notes.append(
            f"chunks ({ch}x{cw}) are much larger than the crop ({kh}x{kw}): each crop reads and "
            "decodes far more than it returns. Use chunks of about the crop size."
        )
    if len(chunks) >= 3 and chunks[0] > 1 and crop_shape[0] == 1:
        notes.append(
            f"a chunk holds {chunks[0]} frames but a crop needs one: store one frame per chunk."
        )
    return notes


def _run_bench(args: argparse.Namespace) -> int:
    import numpy as np

    from . import get_num_threads, set_num_threads
    from . import open as open_array

    path = Path(args.path).expanduser()
    if not path.exists():
        return _error(f"{path} does not exist", code=2)
    try:
        zarr_arr = _pick_array(path, args.array)
    except ValueError as exc:
        return _error(str(exc), code=2)
    except Exception as exc:
        return _error(f"{path} is not a zarr group or array ({exc.__class__.__name__})", code=2)
    if args.threads is not None:
        set_num_threads(args.threads)
    arr = open_array(zarr_arr)
    shape = tuple(arr.shape)
    if len(shape) < 2:
        return _error(f"{arr.name}: needs 2 or more dimensions, has shape {shape}", code=2)
    label = f"{path}/{zarr_arr.path}" if zarr_arr.path else str(path)
    if 0 in shape:
        return _error(f"{label} is empty (shape {shape}); nothing to read", code=2)
    kh, kw = min(args.crop, shape[-2]), min(args.crop, shape[-1])
    if (kh, kw) != (args.crop, args.crop):
        _warn(
            f"--crop {args.crop} is larger than the {shape[-2]}x{shape[-1]} frames of "
            f"{label}: measuring {kh}x{kw} crops instead"
        )
    _warn_unwritten(zarr_arr, label)
    lead = list(shape[:-2])
    if lead:
        lead[0] = 1
    crop_shape = (*lead, kh, kw)
    rng = np.random.default_rng(args.seed)
    n = args.crops
    starts = np.zeros((n, len(shape)), dtype=np.int64)
    if len(shape) > 2:
        starts[:, 0] = rng.integers(0, shape[0], size=n)
    starts[:, -2] = rng.integers(0, shape[-2] - kh + 1, size=n)
    starts[:, -1] = rng.integers(0, shape[-1] - kw + 1, size=n)

    def selection(row: Any) -> tuple[Any, ...]:
        sel: list[Any] = []
        for axis, (s, k) in enumerate(zip(row, crop_shape, strict=True)):
            if axis == 0 and len(shape) > 2:
                sel.append(int(s))
            else:
                sel.append(slice(int(s), int(s) + k))
        return tuple(sel)

    sels = [selection(r) for r in starts]
    print(
        f"{arr.name}: shape {shape} {arr.dtype}, chunks {tuple(arr.chunks)}; "
        f"{n} random crops of {kh}x{kw}"
    )
    if arr.native:
        print(f"zarrcrop: native reads, {get_num_threads()} thread(s)")
    else:
        print(f"zarrcrop: NOT native, falls back to zarr-python ({arr.fallback_reason})")
    for sel in sels[:WARMUP_CROPS]:
        arr[sel]
        zarr_arr[sel]
    elapsed = {"zarrcrop": 0.0, "zarr-python": 0.0}
    mismatches = 0
    for i, sel in enumerate(sels):
        got = {}
        order = [("zarrcrop", arr), ("zarr-python", zarr_arr)]
        if i % 2:
            order.reverse()
        for name, reader in order:
            t0 = time.perf_counter()
            got[name] = np.asarray(reader[sel])
            elapsed[name] += time.perf_counter() - t0
        if not np.array_equal(got["zarrcrop"], got["zarr-python"], equal_nan=_has_nan(arr.dtype)):
            mismatches += 1
    rate = {k: n / v if v > 0 else float("inf") for k, v in elapsed.items()}
    for name in elapsed:
        print(f"  {name:<12} {rate[name]:8.1f} crops/s")
    print(f"  {'speedup':<12} {rate['zarrcrop'] / rate['zarr-python']:8.2f}x")
    if arr.native:
        seconds = arr.decode_seconds(starts, crop_shape)
        threads = get_num_threads()
        if seconds > 0:
            bound = n / (seconds / threads)
            print(
                f"  {'decode bound':<12} {bound:8.1f} crops/s ({seconds / n * 1e3:.3g} ms of "
                f"decoding per crop on one core, over {threads} thread(s)); zarrcrop reaches "
                f"{rate['zarrcrop'] / bound:.0%} of it"
            )
    notes = _advice(shape, tuple(arr.chunks), crop_shape)
    if not arr.native:
        notes.append(
            "reads are not native; rewrite with 'zarrcrop create' (Blosc, no filters) to get them."
        )
    for note in notes:
        print(f"advice: {note}")
    if mismatches:
        return _error(f"{mismatches} of {n} crops differ between zarrcrop and zarr-python")
    print(f"OK: all {n} crops are identical to zarr-python's.")
    return 0


def _warn_unwritten(zarr_arr: Any, name: str) -> None:
    """Warn when chunks were never written: their reads return the fill value, decoding nothing."""
    try:
        written, total = int(zarr_arr.nchunks_initialized), int(zarr_arr.nchunks)
    except Exception:  # stores that cannot list their keys: nothing to say
        return
    fill = zarr_arr.fill_value
    if written == 0:
        _warn(
            f"no chunk of {name} is written: every read returns the fill value ({fill}) "
            "without decoding anything, so these figures do not measure decoding"
        )
    elif written < total:
        _warn(
            f"only {written} of {total} chunks of {name} are written: crops over the others "
            f"return the fill value ({fill}) without decoding"
        )


def _has_nan(dtype: Any) -> bool:
    import numpy as np

    return bool(np.issubdtype(dtype, np.inexact))


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------

_COMMANDS: list[Callable[[Any], None]] = [
    _add_demo_command,
    _add_create_command,
    _add_info_command,
    _add_bench_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="zarrcrop",
        description="Fast native crop reads of Zarr arrays, drop-in for zarr-python.",
    )
    parser.add_argument("--version", action="version", version=f"zarrcrop {_package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zarrcrop`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("zarrcrop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
