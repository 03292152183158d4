"""Strided reads: a whole 4K frame with step 2 in both image axes (a 2x-downsampled frame
straight from the full-resolution array), zarrcrop against zarr-python.

One case, ``photo-v2-frame-step2``: each round reads ``arr[t, :, ::2, ::2]`` of the photo
dataset (12 chunks, every row of every chunk, every other item), frame t cycling over the
frames. It is gated like the crop cases (``<case>/loop`` = zarrcrop / zarr-python): strided
selections take other paths through the planner and the block copies than crops do (the
innermost dimension is not contiguous), and a regression there would not show in any crop
case. No decode bound: every block of every chunk is needed.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from zcbench.data import DataCache, dataset_spec
from zcbench.readers import ZarrcropLoop, ZarrPythonLoop
from zcbench.session import Settings

pytest.importorskip("pytest_benchmark")

CASE = "photo-v2-frame-step2"
READERS = {"zarrcrop": ZarrcropLoop, "zarr-python": ZarrPythonLoop}
STEP = 2


@pytest.mark.benchmark(group=CASE)
@pytest.mark.parametrize("reader_name", list(READERS), ids=[f"{CASE}-{r}" for r in READERS])
def test_strided(
    benchmark: Any, reader_name: str, bench_data: DataCache, bench_settings: Settings
) -> None:
    spec = dataset_spec("photo", 2)
    path = bench_data.array_path(spec)
    reader = READERS[reader_name](path, 1)
    frames = spec.shape[0]

    def frame(t: int) -> np.ndarray:
        return np.asarray(reader.array[t, :, ::STEP, ::STEP])

    expected = np.asarray(ZarrPythonLoop(path, 1).array[0, :, ::STEP, ::STEP])
    got = frame(0)
    assert got.dtype == expected.dtype and np.array_equal(got, expected), (
        f"{reader_name} returned different data than zarr-python"
    )
    bench_data.warm(spec)
    benchmark.extra_info.update(
        case=CASE,
        reader=reader_name,
        mode="loop",
        content="photo",
        zarr_format=2,
        selection=f"[t, :, ::{STEP}, ::{STEP}]",
        crops_per_round=1,
        threads=bench_settings.threads,
    )
    calls = itertools.count()

    def next_round() -> tuple[tuple[int], dict[str, Any]]:
        return (next(calls) % frames,), {}

    benchmark.pedantic(
        frame, setup=next_round, rounds=bench_settings.rounds, iterations=1, warmup_rounds=1
    )
