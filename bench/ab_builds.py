"""Compare builds of zarrcrop's extension in one process, batch by batch (A/B without drift).

    python bench/ab_builds.py OLD.so NEW.so [--threads 2] [--batch 16] [--reps 6]

Loads each ``_core`` shared library given (copies of
``zarrcrop/_core.cpython-*.so`` from two builds), opens the photo v2 benchmark array with each,
and reads the same ``read_crops`` batches of 960x960 crops with all of them in turn: batch i
with A then B, batch i+1 with B then A, and so on. Every build has its own output buffer. On a
shared machine whose speed drifts by several percent over seconds to minutes, this puts the
same drift on every build; separate runs of ``profile_crops.py`` cannot resolve differences
of 1-2%. Prints the cumulative crops/s of each build after every pass over the batches, and
checks once that all builds return the same bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zarrcrop
from zcbench.cases import dataset_spec
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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="crops per read_crops call")
    parser.add_argument("--crops", type=int, default=640, help="crops per pass")
    parser.add_argument("--reps", type=int, default=6, help="passes over the crops")
    parser.add_argument("--size", type=int, default=960)
    args = parser.parse_args()

    spec = dataset_spec("photo", 2)
    cache = DataCache(default_data_root())
    if not cache.is_complete(spec):
        cache.build(spec)
    cache.warm(spec)
    arr = zarrcrop.open(str(cache.array_path(spec)))
    layout = arr._layout
    if layout is None:
        raise SystemExit(f"{arr.name}: not native ({arr.fallback_reason})")
    readers = []
    for k, path in enumerate(args.builds):
        core = load_build(path, "zarrcrop._core")
        core.set_num_threads(args.threads)
        readers.append(
            core.CropReader(
                name=f"{layout.root} [{k}]",
                root=layout.root,
                shape=list(layout.shape),
                chunks=list(layout.chunks),
                itemsize=layout.dtype.itemsize,
                codecs=list(layout.codecs),
                key_prefix=layout.key_prefix,
                key_separator=layout.key_separator,
                fill_value=layout.fill_value,
                cache_bytes=0,
                swap_width=layout.swap_width,
                order=layout.order,
                shard_shape=list(layout.shard_shape),
                shard_index_location=layout.shard_index_location,
                shard_index_crc32c=layout.shard_index_crc32c,
            )
        )
    frames, channels, height, width = arr.shape
    s, n, b = args.size, args.crops - args.crops % args.batch, args.batch
    rng = np.random.default_rng(0)
    starts = np.stack(
        [
            rng.integers(0, frames, n),
            np.zeros(n, np.int64),
            rng.integers(0, height - s + 1, n),
            rng.integers(0, width - s + 1, n),
        ],
        axis=1,
    )
    shape = [1, channels, s, s]
    fill = np.zeros(1, arr.dtype).tobytes()
    outs = [arr.read_crops(starts[:b], shape) for _ in readers]  # aligned, as read_crops makes
    seconds = [0.0] * len(readers)
    for rep in range(args.reps):
        for i in range(0, n, b):
            order = list(range(len(readers)))
            if (i // b + rep) % 2:
                order.reverse()
            for k in order:
                t0 = time.perf_counter()
                readers[k].read_crops(starts[i : i + b], shape, outs[k], False, fill)
                seconds[k] += time.perf_counter() - t0
            if rep == 0 and not all(np.array_equal(outs[0], o) for o in outs[1:]):
                raise SystemExit(f"builds disagree on batch {i // b}")
        rates = ", ".join(f"{(rep + 1) * n / t:.1f}" for t in seconds)
        print(f"pass {rep + 1}: crops/s {rates}", flush=True)


if __name__ == "__main__":
    main()
