"""Memory of a long single-crop loop with zarrcrop; run in a fresh process.

``python -m zcbench.memcheck ARRAY --size 960 --reads 10000 --checkpoint 1000 --threads N``
(with bench/ on ``sys.path``) prints one JSON object:

- ``rss_before``: current RSS (``/proc/self/statm``) just before the loop, after opening;
- ``peak_at_checkpoint``: peak RSS of this process after ``checkpoint`` reads;
- ``rss_at_checkpoint``, ``rss_end``: current RSS after ``checkpoint`` and after all reads;
- ``out_bytes``, ``chunk_bytes``, ``threads``: for the limit the caller checks.

The peak is ``VmHWM`` of ``/proc/self/status``, reset to the current RSS just before the loop
(``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) where the kernel allows it, so that it covers
exactly the loop; otherwise it also covers imports and opening (a stricter check).
``getrusage().ru_maxrss`` is recorded too but not used: on Linux a process started by
fork/vfork + exec inherits its parent's high-water mark in ``ru_maxrss`` (the pytest process
that runs this, hundreds of MiB), so even in a fresh subprocess it does not reflect only this
workload.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ru_maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def peak_rss() -> int:
    """This process image's peak RSS (VmHWM), falling back to ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return ru_maxrss()


def rss_parts() -> dict[str, int]:
    """RssAnon and RssFile of /proc/self/status in bytes (empty where unavailable). RssFile
    holds the mapped pages of chunk files (zarrcrop.set_map_limit): page cache, clean, shared."""
    parts: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    key, value = line.split()[:2]
                    parts[key.rstrip(":")] = int(value) * 1024
    except OSError:
        pass
    return parts


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("array")
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--checkpoint", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    import zarrcrop

    if args.threads:
        zarrcrop.set_num_threads(args.threads)
    array = zarrcrop.open(args.array, strict=True)  # cache_bytes=0: no decoded-chunk cache
    frames, channels, height, width = array.shape
    s = args.size
    rng = np.random.default_rng(args.seed)
    starts = np.stack(
        [
            rng.integers(0, frames, args.reads),
            rng.integers(0, height - s + 1, args.reads),
            rng.integers(0, width - s + 1, args.reads),
        ],
        axis=1,
    ).tolist()

    peak_reset = reset_peak()
    rss_before = current_rss()
    parts_before = rss_parts()
    parts_at_checkpoint: dict[str, int] = {}
    peak_at_checkpoint = rss_at_checkpoint = 0
    start = time.perf_counter()
    for i, (t, y, x) in enumerate(starts, 1):
        crop = array[t, :, y : y + s, x : x + s]
        del crop
        if i == args.checkpoint:
            peak_at_checkpoint = peak_rss()
            rss_at_checkpoint = current_rss()
            parts_at_checkpoint = rss_parts()
    seconds = time.perf_counter() - start
    itemsize = array.dtype.itemsize
    result = {
        "array": args.array,
        "reads": args.reads,
        "checkpoint": args.checkpoint,
        "crop_size": s,
        "threads": zarrcrop.get_num_threads(),
        "rss_before": rss_before,
        "peak_at_checkpoint": peak_at_checkpoint,
        "rss_at_checkpoint": rss_at_checkpoint,
        "rss_end": current_rss(),
        "peak_end": peak_rss(),
        "peak_source": "VmHWM, reset before the loop" if peak_reset else "VmHWM",
        "ru_maxrss_end": ru_maxrss(),
        "out_bytes": channels * s * s * itemsize,
        "chunk_bytes": int(np.prod(array.chunks)) * itemsize,
        "seconds": seconds,
        "map_limit": zarrcrop.get_map_limit(),
        "mapped_files_bytes": zarrcrop.map_info()["mapped"],
    }
    for key in ("RssAnon", "RssFile"):
        if key in parts_before and key in parts_at_checkpoint:
            result[f"{key}_growth"] = parts_at_checkpoint[key] - parts_before[key]
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
