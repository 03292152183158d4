"""Per-crop CPU split of zarrcrop's crop reads, for bench/PROFILE.md.

Reads random 960x960 crops (all channels, one frame) of the benchmark's photo dataset (or
320x320 crops of its float16 flow dataset, ``--content flow``; built
into the benchmark data cache on first use) in a loop of single reads or in ``read_crops``
batches, and prints crops/s, user and system CPU per crop (``resource.getrusage``: the system
time is mostly the kernel copying the compressed blocks out of the page cache), the decode
bound (``CropArray.decode_seconds``: single-thread CPU time to decode only what the crops
need, divided by the threads) and the fraction of it reached.

    python bench/profile_crops.py --threads 2 --crops 300
    python bench/profile_crops.py --threads 2 --batch 16
    perf record -g python bench/profile_crops.py --no-bound    # profile the reads alone
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zarrcrop
from zcbench.data import DataCache, dataset_spec, default_data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crops", type=int, default=300, help="crops per repetition")
    parser.add_argument("--batch", type=int, default=0, help="read_crops batch size (0: loop)")
    parser.add_argument("--content", choices=("photo", "flow"), default="photo")
    parser.add_argument("--size", type=int, default=0, help="crop size (default 960; flow 320)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--zarr-format", type=int, default=2, choices=(2, 3))
    parser.add_argument("--no-bound", action="store_true", help="skip decode_seconds")
    args = parser.parse_args()

    spec = dataset_spec(args.content, args.zarr_format)
    cache = DataCache(default_data_root())
    if not cache.is_complete(spec):
        cache.build(spec)
    cache.warm(spec)
    arr = zarrcrop.open(str(cache.array_path(spec)))
    zarrcrop.set_num_threads(args.threads)
    frames, channels, height, width = arr.shape
    s = args.size or (320 if args.content == "flow" else 960)
    rng = np.random.default_rng(0)
    n = args.crops
    starts = np.stack(
        [
            rng.integers(0, frames, n),
            np.zeros(n, np.int64),
            rng.integers(0, height - s + 1, n),
            rng.integers(0, width - s + 1, n),
        ],
        axis=1,
    )
    shape = (1, channels, s, s)
    batch = args.batch
    out = np.empty((max(batch, 1), *shape), arr.dtype)

    def read_all() -> None:
        if batch:
            for i in range(0, n - batch + 1, batch):
                arr.read_crops(starts[i : i + batch], shape, out=out)
        else:
            for t, _, y, x in starts:
                arr[t, :, y : y + s, x : x + s]

    done = n - n % batch if batch else n
    read_all()  # warm up: workers, scratch buffers
    bound = None
    if not args.no_bound:
        seconds = 0.0
        groups = [starts[i : i + batch] for i in range(0, done, batch)] if batch else [starts]
        for g in groups:
            seconds += min(arr.decode_seconds(g, shape, shared=bool(batch)) for _ in range(3))
        bound = done / (seconds / args.threads)
    for _ in range(args.reps):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        read_all()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        user = (r1.ru_utime - r0.ru_utime) / done * 1e3
        system = (r1.ru_stime - r0.ru_stime) / done * 1e3
        line = f"crops/s {done / wall:7.1f}  user {user:.2f} ms  sys {system:.2f} ms per crop"
        if bound is not None:
            line += f"  bound {bound:.1f} crops/s  fraction {done / wall / bound:.1%}"
        print(line)
    if bound is not None:
        print(f"decode per crop (single thread): {args.threads / bound * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
