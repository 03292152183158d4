"""Crop throughput: zarrcrop against zarr-python, tensorstore and zarrs, case by case.

Each benchmark is one (case, reader) pair; the readers of a case form one benchmark group.
A round reads ``--bench-per-round`` crops (16 by default): one at a time for the loop readers,
in one ``read_crops`` call for ``zarrcrop-batch``. Round i reads batch i of the case's fixed
crop positions, so every reader reads exactly the same crops: the other readers every batch
once, zarrcrop every batch ``--bench-decode-reps`` times. Crops/s is computed by report.py from
the mean round time.

Every round starts with cold CPU caches (``CacheEvictor``; the chunk files stay in the page
cache), the decode bound decodes from memory too.

For zarrcrop, ``extra_info`` also holds the decode bound: single-thread seconds to decode only
what the crops need (``CropArray.decode_seconds``, the minimum of ``--bench-decode-reps``
measurements per batch, taken between the timed rounds: see DecodeBound), divided by the
thread count.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zcbench.caches import CacheEvictor
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


class DecodeBound:
    """The decode bound of one zarrcrop benchmark, measured between its timed rounds.

    A zarrcrop benchmark reads every batch ``reps`` times (``--bench-decode-reps``) over its
    rounds. Before each round (untimed, in pytest-benchmark's setup) the batch of the round
    before is decoded once on this thread (``CropArray.decode_seconds``), so that after all
    rounds every batch has ``reps`` bound measurements spread over the same stretch of time as
    the reads: the bound and the reads see the same phases of a noisy machine. The batch of
    a round itself is not touched before it is read (reading its chunk files would warm the
    CPU caches for the reader; the caches are emptied before every round anyway).

    The fraction of the bound compares like with like: per batch, the fastest of the reps
    bound measurements against the fastest of the reps reads (``best_crops_per_s``).
    """

    def __init__(self, reader: ZarrcropLoop, case: Case, batches: np.ndarray) -> None:
        self.reader = reader
        self.case = case
        self.batches = batches
        self.shared = MODES[reader.name] == "batch"
        self.seconds: list[float | None] = [None] * len(batches)

    def measure(self, i: int) -> None:
        """Decode batch i once; keep the fastest of its measurements."""
        seconds = self.reader.array.decode_seconds(
            self.batches[i], self.case.crop_shape, shared=self.shared
        )
        old = self.seconds[i]
        self.seconds[i] = seconds if old is None else min(old, seconds)

    def info(self, threads: int, read: list[int], round_seconds: list[float]) -> dict[str, Any]:
        """extra_info entries. ``read[k]`` is the batch timed round k read, in
        ``round_seconds[k]`` seconds. Bound crops/s = crops / (seconds / threads)."""
        for i, seconds in enumerate(self.seconds):
            if seconds is None:  # fewer rounds than batches: measure the rest now
                self.measure(i)
        seconds = float(sum(s for s in self.seconds if s is not None))
        best: dict[int, float] = {}
        for i, t in zip(read, round_seconds, strict=True):
            best[i] = min(best.get(i, t), t)
        crops = self.batches.shape[0] * self.batches.shape[1]
        best_seconds = sum(best.values())
        complete = len(best) == len(self.batches) and best_seconds > 0
        return {
            "decode_shared": self.shared,
            "decode_seconds": seconds,
            "decode_bound_crops_per_s": crops / (seconds / threads) if seconds > 0 else None,
            "best_round_seconds": best_seconds if complete else None,
            "best_crops_per_s": crops / best_seconds if complete else None,
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
    bound = DecodeBound(reader, case, batches) if isinstance(reader, ZarrcropLoop) else None
    # zarrcrop reads every batch decode_reps times (the bound's estimator, see DecodeBound),
    # the other readers once; the mean round time covers the same batches either way.
    rounds = settings.rounds * (settings.decode_reps if bound is not None else 1)

    lists = [batch.tolist() for batch in batches]
    calls = itertools.count()
    read: list[int] = []
    evict = CacheEvictor()

    def next_round() -> tuple[tuple[np.ndarray, list[list[int]]], dict[str, Any]]:
        i = next(calls) % len(batches)  # warmup reads batch 0, the timed rounds 1, 2, ...
        if bound is not None:
            bound.measure((i - 1) % len(batches))  # the batch read last (untimed)
        evict()
        read.append(i)
        return (batches[i], lists[i]), {}

    benchmark.pedantic(
        reader.read_round,
        setup=next_round,
        rounds=rounds,
        iterations=1,
        warmup_rounds=1,
    )
    if bound is not None:
        stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
        round_seconds = list(stats.stats.data) if stats is not None else []
        timed = read[1:] if round_seconds else []  # read[0]: the warmup round
        benchmark.extra_info.update(bound.info(settings.threads, timed, round_seconds))
