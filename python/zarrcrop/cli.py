"""Command line interface: ``zarrcrop COMMAND ...`` (also ``python -m zarrcrop``).

Each subcommand is registered by one ``_add_<name>_command(subparsers)`` function listed in
``_COMMANDS``; it adds its parser and sets ``func`` (called with the parsed namespace, returns the
exit code). To add a command (``create``, ``info``, ``bench`` ...), write such a function and
append it to ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
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
        "--crops", type=_positive_int, default=50, metavar="N", help="crops to read (default 50)"
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
        type=_positive_int,
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
        return _error(reason)
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
# entry point
# --------------------------------------------------------------------------------------------

_COMMANDS: list[Callable[[Any], None]] = [_add_demo_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
