"""Crop throughput: zarrcrop against zarr-python, tensorstore and zarrs, case by case.

Each benchmark is one (case, reader) pair; the readers of a case form one benchmark group.
A round reads ``--bench-per-round`` crops (16 by default): one at a time for the loop readers,
in one ``read_crops`` call for ``zarrcrop-batch``. Round i reads batch i of the case's fixed
crop positions, so every reader reads exactly the same crops, and over its timed rounds
each reader reads every batch once. Crops/s is computed by report.py from the mean round time.

For zarrcrop, ``extra_info`` also holds the decode bound: single-thread seconds to decode only
what the crops need (``CropArray.decode_seconds``, the minimum of ``--bench-decode-reps``
measurements per batch), divided by the thread count.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zcbench.cases import CASES, MODES, READERS, Case, crop_batches
from zcbench.data import DataCache
from zcbench.readers import (
    ReaderUnavailable,
    RoundReader,
    ZarrcropLoop,
    ZarrPythonLoop,
    ZarrsLoop,
    open_reader,
)
from zcbench.session import Settings

pytest.importorskip("pytest_benchmark")

PARAMS = [
    pytest.param(
        case,
        reader,
        id=f"{case.id}-{reader}",
        marks=pytest.mark.benchmark(group=case.id),
    )
    for case in CASES
    for reader in READERS
]

CHECKED_CROPS = 4  # crops of batch 0 compared with zarr-python before timing


@lru_cache(maxsize=1)
def _reference(path: Path, size: int, starts: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    reader = ZarrPythonLoop(path, size)
    return np.stack([reader.crop(t, y, x) for t, y, x in starts])


def _check_crops(reader: RoundReader, path: Path, size: int, batch: np.ndarray) -> None:
    """The reader returns exactly what zarr-python returns (a wrong reader is not timed)."""
    starts = tuple((int(t), int(y), int(x)) for t, _, y, x in batch[:CHECKED_CROPS].tolist())
    expected = _reference(path, size, starts)
    if isinstance(reader, ZarrcropLoop) and MODES[reader.name] == "batch":
        got = reader.array.read_crops(batch[:CHECKED_CROPS], (1, expected.shape[1], size, size))
        got = got[:, 0]
    else:
        got = np.stack([reader.crop(t, y, x) for t, y, x in starts])
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected, equal_nan=got.dtype.kind == "f"), (
        f"{reader.name} returned different data than zarr-python for {starts}"
    )


def _decode_bound(
    reader: ZarrcropLoop, case: Case, batches: np.ndarray, reps: int, threads: int
) -> dict[str, Any]:
    """Seconds to decode what the crops need, on one thread; bound = crops / (s / threads)."""
    shared = MODES[reader.name] == "batch"
    seconds = 0.0
    for batch in batches:
        seconds += min(
            reader.array.decode_seconds(batch, case.crop_shape, shared=shared) for _ in range(reps)
        )
    crops = batches.shape[0] * batches.shape[1]
    return {
        "decode_shared": shared,
        "decode_seconds": seconds,
        "decode_bound_crops_per_s": crops / (seconds / threads) if seconds > 0 else None,
    }


@pytest.mark.parametrize(("case", "reader_name"), PARAMS)
def test_crops(
    benchmark: Any,
    case: Case,
    reader_name: str,
    bench_data: DataCache,
    bench_settings: Settings,
) -> None:
    settings = bench_settings
    path = bench_data.array_path(case.spec)
    batches = crop_batches(case, settings.rounds, settings.per_round)
    try:
        reader = open_reader(reader_name, path, case.size, case.zarr_format, settings.threads)
        if isinstance(reader, ZarrsLoop):
            t, _, y, x = batches[0, 0].tolist()
            reader.check_native(t, y, x)
    except ReaderUnavailable as exc:
        pytest.skip(str(exc))
    _check_crops(reader, path, case.size, batches[0])
    bench_data.warm(case.spec)

    benchmark.extra_info.update(
        case=case.id,
        reader=reader_name,
        mode=MODES[reader_name],
        content=case.content,
        zarr_format=case.zarr_format,
        crop_size=case.size,
        crop_shape=list(case.crop_shape[1:]),
        crops_per_round=settings.per_round,
        threads=settings.threads,
    )
    if isinstance(reader, ZarrcropLoop):
        benchmark.extra_info.update(
            _decode_bound(reader, case, batches, settings.decode_reps, settings.threads)
        )

    lists = [batch.tolist() for batch in batches]
    calls = itertools.count()

    def next_round() -> tuple[tuple[np.ndarray, list[list[int]]], dict[str, Any]]:
        i = next(calls) % len(batches)  # warmup reads batch 0, the timed rounds 1..R-1, 0
        return (batches[i], lists[i]), {}

    benchmark.pedantic(
        reader.read_round,
        setup=next_round,
        rounds=settings.rounds,
        iterations=1,
        warmup_rounds=1,
    )
