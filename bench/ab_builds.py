"""Compare builds of zarrcrop's extension in one process, batch by batch (A/B without drift).

    python bench/ab_builds.py OLD.so NEW.so [--case photo-v2-960] [--threads 2] [--reps 6]
    python bench/ab_builds.py OLD.so NEW.so --cold --batch 1   # cold page cache, single crops
    python bench/ab_builds.py NEW.so NEW.so --cold --io-threads 1 8   # one build, two settings

Loads each ``_core`` shared library given (copies of
``zarrcrop/_core.cpython-*.so`` from two builds), opens a benchmark case's array with each, and
reads the suite's ``read_crops`` batches of that case (16 crops each) with all of them in turn:
batch i with A then B, batch i+1 with B then A, and so on. Every build has its own output
buffer. On a shared machine whose speed drifts by several percent over seconds to minutes,
this puts the same drift on every build; separate runs of ``profile_crops.py`` cannot
resolve differences of 1-2%. With ``--cold`` every read starts with the case's files evicted
from the page cache (every build's mappings cleared first), as in ``test_cold.py``.
``--io-threads`` gives each build its I/O thread count (builds that have the setting).
Prints the cumulative crops/s of each build after every pass over the batches, and checks
once that all builds return the same bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zarrcrop
from zcbench.cases import CASES, crop_batches
from zcbench.data import DataCache, default_data_root


def load_build(path: str, name: str) -> Any:
    """Import the extension at `path` as its own module (the library is opened per path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a loadable extension")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+", help="_core shared libraries to compare")
    parser.add_argument("--case", default="photo-v2-960", choices=[c.id for c in CASES])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="crops per read_crops call")
    parser.add_argument("--batches", type=int, default=40, help="batches per pass")
    parser.add_argument("--reps", type=int, default=6, help="passes over the batches")
    parser.add_argument("--cold", action="store_true", help="evict the files before every read")
    parser.add_argument("--io-threads", type=int, nargs="+", help="per build, in order")
    args = parser.parse_args()
    if args.io_threads is not None and len(args.io_threads) != len(args.builds):
        raise SystemExit("--io-threads takes one count per build")

    case = next(c for c in CASES if c.id == args.case)
    cache = DataCache(default_data_root())
    if not cache.is_complete(case.spec):
        cache.build(case.spec)
    cache.warm(case.spec)
    arr = zarrcrop.open(str(cache.array_path(case.spec)))
    layout = arr._layout
    if layout is None:
        raise SystemExit(f"{arr.name}: not native ({arr.fallback_reason})")
    readers = []
    cores = []
    for k, path in enumerate(args.builds):
        core = load_build(path, "zarrcrop._core")
        core.set_num_threads(args.threads)
        cores.append(core)
        readers.append(core.CropReader(**{**layout.reader_args(), "name": f"{arr.name} [{k}]"}))
    files = sorted(p for p in cache.group_path(case.spec).rglob("*") if p.is_file())

    def prepare(k: int) -> None:
        """Before build k reads: its I/O threads; with --cold, the files evicted."""
        if args.io_threads is not None and hasattr(cores[k], "set_io_threads"):
            cores[k].set_io_threads(args.io_threads[k])
        if args.cold:
            for core in cores:
                core.clear_maps()
            for path in files:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

    batches = crop_batches(case, args.batches, args.batch)  # the suite's crops of this case
    shape = list(case.crop_shape)
    fill = np.zeros(1, arr.dtype).tobytes()
    outs = [arr.read_crops(batches[0], shape) for _ in readers]  # line-aligned, as zarrcrop's
    seconds = [0.0] * len(readers)
    for rep in range(args.reps):
        for i, starts in enumerate(batches):
            order = list(range(len(readers)))
            if (i + rep) % 2:
                order.reverse()
            for k in order:
                prepare(k)
                t0 = time.perf_counter()
                readers[k].read_crops(starts, shape, outs[k], False, fill)
                seconds[k] += time.perf_counter() - t0
            if rep == 0 and not all(np.array_equal(outs[0], o) for o in outs[1:]):
                raise SystemExit(f"builds disagree on batch {i}")
        crops = (rep + 1) * batches.shape[0] * batches.shape[1]
        rates = ", ".join(f"{crops / t:.1f}" for t in seconds)
        print(f"pass {rep + 1}: crops/s {rates}", flush=True)


if __name__ == "__main__":
    main()
