"""Crop throughput with the page cache cold: datasets larger than RAM.

Before every round (untimed) zarrcrop's kept mappings are cleared and every file of the
dataset is evicted from the page cache (``posix_fadvise(POSIX_FADV_DONTNEED)``), so each round
reads its chunks from the disk. Readers as in test_crops.py (same crops, same checks), plus
the disk itself, in the same run:

- ``disk-16``: the round's unique chunk files read whole with 16 threads (``pread``): what the
  device delivers to a deep queue, the bound for a reader that reads whole chunks;
- ``disk-1``: the same with one thread (queue depth one);
- ``disk-16-per-crop``: each crop's chunk files read whole with 16 threads, crop after crop:
  the bound for a loop of single reads.

``zarrcrop-prefetch`` is the loop with ``CropArray.prefetch`` of crop i + 1 before crop i is
read. ``zarrcrop-loader`` is ``CropLoader`` (batches of ``--bench-per-round`` crops, prefetch
on): a round is LOADER_BATCHES batches of a fresh iterator over a new epoch, so its crops are
its own; its bounds (the round's unique chunk files read with 16 threads after an eviction,
and its batches' shared decode bound) are measured in the same test.

The decode bound of every zarrcrop reader (``CropArray.decode_seconds``: single-thread CPU
seconds to decode what the crops need, each crop alone for loops, chunks shared within a batch
for batches) is measured between the rounds, before the eviction, and recorded with the
benchmark: a cold read can be no faster than the lower of the device's bound and the decode
bound, and the targets compare with that lower one.

Run: ``python -m pytest bench/test_cold.py`` (``--bench-rounds``, ``--bench-per-round``,
``--bench-threads`` apply; at most MAX_ROUNDS rounds). Skipped where eviction has no effect
(tmpfs).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zcbench.cases import MODES, Case, crop_batches
from zcbench.data import DataCache
from zcbench.readers import ReaderUnavailable, RoundReader, ZarrcropLoop, open_reader
from zcbench.report_io import COLD_READERS
from zcbench.session import Settings

pytest.importorskip("pytest_benchmark")

CASES = (Case("photo", 2, 960), Case("photo", 3, 960), Case("photo", 3, 960, "sharded"))
READERS = COLD_READERS
MAX_ROUNDS = 12
LOADER_BATCHES = 4


def dataset_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def evict(root: Path) -> None:
    """Every file under root out of the page cache (mapped pages stay: unmap first)."""
    import zarrcrop

    zarrcrop.clear_maps()
    for path in dataset_files(root):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def is_cached(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def round_files(case: Case, path: Path, batch: np.ndarray) -> list[Path]:
    """The chunk (or shard) files a round's crops touch, each once."""
    spec = case.spec
    chunks = spec.shards if case.layout == "sharded" else spec.chunks
    files: set[Path] = set()
    for t, _, y, x in batch.tolist():
        for cy in range(y // chunks[2], (y + case.size - 1) // chunks[2] + 1):
            for cx in range(x // chunks[3], (x + case.size - 1) // chunks[3] + 1):
                coords = (t // chunks[0], 0, cy, cx)
                if case.zarr_format == 2:
                    files.add(path / ".".join(map(str, coords)))
                else:
                    files.add(path.joinpath("c", *map(str, coords)))
    return sorted(files)


class PrefetchLoop(ZarrcropLoop):
    """The zarrcrop loop, each crop read after asking for the next one's chunks."""

    name = "zarrcrop-prefetch"

    def read_round(self, starts: np.ndarray, starts_list: list[list[int]]) -> None:
        shape = (1, 3, self.size, self.size)
        for i, (t, _, y, x) in enumerate(starts_list):
            if i + 1 < len(starts):
                self.array.prefetch(starts[i + 1 : i + 2], shape)
            self.crop(t, y, x)


class LoaderRounds(RoundReader):
    """``CropLoader`` (batch = ``per_round`` crops, prefetch on), a fresh iterator over epoch k
    for round k, LOADER_BATCHES batches per round."""

    name = "zarrcrop-loader"

    def __init__(self, path: Path, size: int, per_round: int) -> None:
        super().__init__(size)
        import zarrcrop
        from zarrcrop.torch import CropDataset, CropLoader

        self.array = zarrcrop.open(path, strict=True)
        self.per_round = per_round
        self.dataset = CropDataset(self.array, size, length=per_round * LOADER_BATCHES, seed=0)
        self.loader = CropLoader(self.dataset, per_round, shuffle=False, prefetch=2)
        self.epoch = 0

    def crop(self, t: int, y: int, x: int) -> np.ndarray:  # pragma: no cover - not a reader
        raise NotImplementedError

    def round_batches(self, epoch: int) -> list[np.ndarray]:
        """The (per_round, 4) starts of each batch of round `epoch`."""
        starts = self.dataset.sample_starts(range(self.per_round * LOADER_BATCHES), epoch)
        flat = np.asarray(starts["__single__"], dtype=np.int64)
        return [flat[i : i + self.per_round] for i in range(0, len(flat), self.per_round)]

    def read_round(self, starts: np.ndarray, starts_list: list[list[int]]) -> None:
        self.loader.set_epoch(self.epoch)
        for _ in self.loader:
            pass


class DiskRead(RoundReader):
    """Reads the round's files whole with ``threads`` threads: the device's bound (with
    ``per_crop``, each crop's files in turn)."""

    def __init__(self, case: Case, path: Path, threads: int, per_crop: bool = False) -> None:
        super().__init__(case.size)
        self.case, self.path, self.threads, self.per_crop = case, path, threads, per_crop
        self.pool = ThreadPoolExecutor(threads)

    def crop(self, t: int, y: int, x: int) -> np.ndarray:  # pragma: no cover - not a reader
        raise NotImplementedError

    @staticmethod
    def _read(path: Path) -> int:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            done = 0
            while done < size:
                n = len(os.pread(fd, min(size - done, 1 << 24), done))
                if n == 0:
                    break
                done += n
            return done
        finally:
            os.close(fd)

    def read_round(self, starts: np.ndarray, starts_list: list[list[int]]) -> None:
        for group in [starts[i : i + 1] for i in range(len(starts))] if self.per_crop else [starts]:
            sum(self.pool.map(self._read, round_files(self.case, self.path, group)))


@pytest.mark.parametrize(
    ("case", "reader_name"),
    [
        pytest.param(c, r, id=f"cold-{c.id}-{r}", marks=pytest.mark.benchmark(group=f"cold-{c.id}"))
        for c in CASES
        for r in READERS
        if not (c.layout == "sharded" and r.startswith("disk"))  # whole shards: not a bound
    ],
)
def test_cold(
    benchmark: Any, case: Case, reader_name: str, bench_data: DataCache, bench_settings: Settings
) -> None:
    settings = bench_settings
    path = bench_data.array_path(case.spec)
    group = bench_data.group_path(case.spec)
    evict(group)
    if all(is_cached(p) for p in dataset_files(group)):
        pytest.skip("evicting files from the page cache has no effect on this file system")
    rounds = min(settings.rounds, MAX_ROUNDS)
    batches = crop_batches(case, rounds, settings.per_round)
    reader: RoundReader
    if reader_name.startswith("disk"):
        reader = DiskRead(case, path, int(reader_name.split("-")[1]), "per-crop" in reader_name)
        mode = "bound"
    elif reader_name == "zarrcrop-prefetch":
        reader = PrefetchLoop(path, case.size)
        mode = "loop"
    elif reader_name == "zarrcrop-loader":
        pytest.importorskip("torch")
        reader = LoaderRounds(path, case.size, settings.per_round)
        mode = "loader"
    else:
        try:
            reader = open_reader(reader_name, path, case.size, case.zarr_format, settings.threads)
        except ReaderUnavailable as exc:
            pytest.skip(str(exc))
        mode = MODES[reader_name]
        if isinstance(reader, ZarrcropLoop):  # the same crops as zarr-python, cold too
            reference = open_reader("zarr-python", path, case.size, case.zarr_format, 1)
            for t, _, y, x in batches[0][:2].tolist():
                assert np.array_equal(reader.crop(t, y, x), reference.crop(t, y, x))
    lists = [b.tolist() for b in batches]
    calls = iter(range(10**9))
    # The decode bound of the zarrcrop readers: per batch (a loader round: per round), the
    # fastest of its measurements, taken before the eviction of the round after it.
    array = reader.array if isinstance(reader, (ZarrcropLoop, LoaderRounds)) else None
    shared = mode in ("batch", "loader")
    decode: dict[int, float] = {}
    crop_shape = (1, 3, case.size, case.size)

    def measure(i: int) -> None:
        if array is None:
            return
        if isinstance(reader, LoaderRounds):
            parts = reader.round_batches(i)
        else:
            parts = [batches[i % len(batches)]]
        seconds = sum(array.decode_seconds(b, crop_shape, shared=shared) for b in parts)
        decode[i] = min(decode.get(i, seconds), seconds)

    loader_rounds: list[int] = []

    def next_round() -> tuple[tuple[np.ndarray, list[list[int]]], dict[str, Any]]:
        i = next(calls)
        if i > 0:
            measure(i - 1 if isinstance(reader, LoaderRounds) else (i - 1) % len(batches))
        if isinstance(reader, LoaderRounds):
            reader.epoch = i
            loader_rounds.append(i)
        evict(group)
        return (batches[i % len(batches)], lists[i % len(batches)]), {}

    benchmark.pedantic(
        reader.read_round, setup=next_round, rounds=rounds, iterations=1, warmup_rounds=1
    )
    stats = getattr(benchmark, "stats", None)
    mean = stats.stats.mean if stats is not None else None
    crops_per_round = settings.per_round * (LOADER_BATCHES if mode == "loader" else 1)
    info: dict[str, Any] = dict(
        cold_case=case.id,
        cold_reader=reader_name,
        mode=mode,
        threads=settings.threads,
        crops_per_round=crops_per_round,
        crops_per_s=crops_per_round / mean if mean else None,
    )
    if array is not None:
        timed = loader_rounds[1:] if loader_rounds else list(range(len(batches)))
        for i in timed:
            if i not in decode:
                measure(i)
        seconds = sum(decode[i] for i in timed)
        crops = crops_per_round * len(timed)
        info.update(
            decode_shared=shared,
            decode_bound_crops_per_s=crops / (seconds / settings.threads) if seconds else None,
        )
    if isinstance(reader, LoaderRounds):
        # Its own device bound: each timed round's unique chunk files, read whole with 16
        # threads after an eviction, as disk-16 does for a batch.
        disk = DiskRead(case, path, 16)
        seconds = 0.0
        for i in loader_rounds[1:]:
            evict(group)
            t0 = time.perf_counter()
            disk.read_round(np.concatenate(reader.round_batches(i)), [])
            seconds += time.perf_counter() - t0
        info["disk_bound_crops_per_s"] = crops_per_round * len(loader_rounds[1:]) / seconds
    benchmark.extra_info.update(info)
