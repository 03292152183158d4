"""``zarrcrop bench``: crops/s of zarrcrop vs zarr-python on a dataset, and layout advice."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr

from .. import CropArray, get_num_threads, set_num_threads
from .. import open as open_array
from .common import (
    WARMUP_CROPS,
    add_crops,
    add_seed,
    error,
    positive_int,
    thread_count,
    warn,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` command to ``subparsers``."""
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
        type=positive_int,
        default=960,
        metavar="N",
        help="crop side (default 960); larger than the frames: whole frames, with a warning",
    )
    add_crops(p)
    p.add_argument(
        "--threads", type=thread_count, default=None, metavar="N", help="zarrcrop threads"
    )
    add_seed(p)
    p.set_defaults(func=run)


def pick_array(path: Path, name: str | None) -> zarr.Array[Any]:
    """The array to measure: ``name`` in the group at ``path``, else ``gt``, else the first.

    Raises ValueError, with the message to show, when there is no such array.
    """
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


def _walk_arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array[Any]]]:
    """(path, array) of every array under ``group``, at any depth."""
    for name, child in group.members():
        if isinstance(child, zarr.Array):
            yield prefix + name, child
        else:
            yield from _walk_arrays(child, prefix + name + "/")


def advice(
    shape: tuple[int, ...], chunks: tuple[int, ...], crop_shape: tuple[int, ...]
) -> list[str]:
    """Notes on how the chunking of an array fits crops of ``crop_shape`` (none if it fits)."""
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


def run(args: argparse.Namespace) -> int:
    """Run ``zarrcrop bench`` with the parsed ``args``; returns the exit status."""
    path = Path(args.path).expanduser()
    if not path.exists():
        return error(f"{path} does not exist", code=2)
    try:
        zarr_arr = pick_array(path, args.array)
    except ValueError as exc:
        return error(str(exc), code=2)
    except Exception as exc:
        return error(f"{path} is not a zarr group or array ({exc.__class__.__name__})", code=2)
    if args.threads is not None:
        set_num_threads(args.threads)
    arr = open_array(zarr_arr)
    shape = tuple(arr.shape)
    if len(shape) < 2:
        return error(f"{arr.name}: needs 2 or more dimensions, has shape {shape}", code=2)
    label = f"{path}/{zarr_arr.path}" if zarr_arr.path else str(path)
    if 0 in shape:
        return error(f"{label} is empty (shape {shape}); nothing to read", code=2)
    kh, kw = min(args.crop, shape[-2]), min(args.crop, shape[-1])
    if (kh, kw) != (args.crop, args.crop):
        warn(
            f"--crop {args.crop} is larger than the {shape[-2]}x{shape[-1]} frames of "
            f"{label}: measuring {kh}x{kw} crops instead"
        )
    _warn_unwritten(zarr_arr, label)
    lead = list(shape[:-2])
    if lead:
        lead[0] = 1
    crop_shape = (*lead, kh, kw)
    n = args.crops
    starts = _random_starts(np.random.default_rng(args.seed), n, shape, crop_shape)
    sels = [_selection(row, crop_shape) for row in starts]
    print(
        f"{arr.name}: shape {shape} {arr.dtype}, chunks {tuple(arr.chunks)}; "
        f"{n} random crops of {kh}x{kw}"
    )
    if arr.native:
        print(f"zarrcrop: native reads, {get_num_threads()} thread(s)")
    else:
        print(f"zarrcrop: NOT native, falls back to zarr-python ({arr.fallback_reason})")
    for sel in sels[:WARMUP_CROPS]:  # untimed: first reads open files, start pools, fill caches
        arr[sel]
        zarr_arr[sel]
    mismatches, zarrcrop_rate = _time_reads(arr, zarr_arr, sels)
    if arr.native:
        _print_decode_bound(arr, starts, crop_shape, zarrcrop_rate)
    notes = advice(shape, tuple(arr.chunks), crop_shape)
    if not arr.native:
        notes.append(
            "reads are not native; rewrite with 'zarrcrop create' (Blosc, no filters) to get them."
        )
    for note in notes:
        print(f"advice: {note}")
    if mismatches:
        return error(f"{mismatches} of {n} crops differ between zarrcrop and zarr-python")
    print(f"OK: all {n} crops are identical to zarr-python's.")
    return 0


def _random_starts(
    rng: np.random.Generator, n: int, shape: tuple[int, ...], crop_shape: tuple[int, ...]
) -> npt.NDArray[np.int64]:
    """(n, ndim) start corners: a random frame (first axis) and a random place in it."""
    kh, kw = crop_shape[-2], crop_shape[-1]
    starts = np.zeros((n, len(shape)), dtype=np.int64)
    if len(shape) > 2:
        starts[:, 0] = rng.integers(0, shape[0], size=n)
    starts[:, -2] = rng.integers(0, shape[-2] - kh + 1, size=n)
    starts[:, -1] = rng.integers(0, shape[-1] - kw + 1, size=n)
    return starts


def _selection(row: npt.NDArray[np.int64], crop_shape: tuple[int, ...]) -> tuple[Any, ...]:
    """The selection of the crop starting at ``row``: an index on axis 0 (3+ dims), else slices."""
    sel: list[Any] = []
    for axis, (s, k) in enumerate(zip(row, crop_shape, strict=True)):
        if axis == 0 and len(crop_shape) > 2:
            sel.append(int(s))
        else:
            sel.append(slice(int(s), int(s) + k))
    return tuple(sel)


def _time_reads(
    arr: CropArray, zarr_arr: zarr.Array[Any], sels: list[tuple[Any, ...]]
) -> tuple[int, float]:
    """Read every selection with both, print crops/s; returns (crops that differ, zarrcrop rate).

    Which library reads a crop first alternates, and only the reads are timed.
    """
    n = len(sels)
    elapsed = {"zarrcrop": 0.0, "zarr-python": 0.0}
    mismatches = 0
    equal_nan = bool(np.issubdtype(arr.dtype, np.inexact))  # NaN fill values compare equal
    for i, sel in enumerate(sels):
        got: dict[str, npt.NDArray[Any]] = {}
        order: list[tuple[str, Any]] = [("zarrcrop", arr), ("zarr-python", zarr_arr)]
        if i % 2:
            order.reverse()
        for name, reader in order:
            t0 = time.perf_counter()
            got[name] = np.asarray(reader[sel])
            elapsed[name] += time.perf_counter() - t0
        if not np.array_equal(got["zarrcrop"], got["zarr-python"], equal_nan=equal_nan):
            mismatches += 1
    rate = {k: n / v if v > 0 else float("inf") for k, v in elapsed.items()}
    for name in elapsed:
        print(f"  {name:<12} {rate[name]:8.1f} crops/s")
    print(f"  {'speedup':<12} {rate['zarrcrop'] / rate['zarr-python']:8.2f}x")
    return mismatches, rate["zarrcrop"]


def _print_decode_bound(
    arr: CropArray, starts: npt.NDArray[np.int64], crop_shape: tuple[int, ...], zarrcrop_rate: float
) -> None:
    """Print the crops/s that decoding alone allows over zarrcrop's threads, and the share met."""
    n = len(starts)
    seconds = arr.decode_seconds(starts, crop_shape)
    threads = get_num_threads()
    if seconds > 0:
        bound = n / (seconds / threads)
        print(
            f"  {'decode bound':<12} {bound:8.1f} crops/s ({seconds / n * 1e3:.3g} ms of "
            f"decoding per crop on one core, over {threads} thread(s)); zarrcrop reaches "
            f"{zarrcrop_rate / bound:.0%} of it"
        )


def _warn_unwritten(zarr_arr: zarr.Array[Any], name: str) -> None:
    """Warn when chunks were never written: their reads return the fill value, decoding nothing."""
    try:
        written, total = int(zarr_arr.nchunks_initialized), int(zarr_arr.nchunks)
    except Exception:  # stores that cannot list their keys: nothing to say
        return
    fill = zarr_arr.fill_value
    if written == 0:
        warn(
            f"no chunk of {name} is written: every read returns the fill value ({fill}) "
            "without decoding anything, so these figures do not measure decoding"
        )
    elif written < total:
        warn(
            f"only {written} of {total} chunks of {name} are written: crops over the others "
            f"return the fill value ({fill}) without decoding"
        )
