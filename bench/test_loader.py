"""Training data loading: crops/s delivered as torch tensors, 960x960 photo crops, batches of 8.

Pipelines (zcbench.loader.PIPELINES), all reading the same random crops of the photo dataset
(zarr v2, the tutorial's layout) in the same order:

- ``croploader``: ``zarrcrop.torch.CropLoader`` (in-process, one ``read_crops`` per batch,
  background prefetch of 2 batches, zarrcrop's pool with ``--bench-threads`` threads);
- ``dataloader-cropdataset``: ``DataLoader(CropDataset, num_workers=2, persistent_workers=True)``;
- ``dataloader-zarr-python``: the same DataLoader over a map-style dataset reading each crop
  with zarr-python (``arr[t, :, y:y+s, x:x+s]``);
- ``dataloader-tensorstore``: the same over a dataset reading with tensorstore.

A round is one ``next()`` on a running iterator (workers started, the first batches drained
by the warmup rounds), so the mean round time is the steady-state time per batch and
crops/s = batch size / mean. ``extra_info["crops_per_s"]`` records it; the module prints a
summary with the ratios against the targets at the end.

``test_locality`` compares ``CropLoader``'s epoch orders (zcbench.loader.LOCALITY_ORDERS):
``shuffle="random"`` against ``shuffle="window"`` (each batch drawn from one window of frames,
here one frame per chunk file), with the page cache warm and cold (every file of the dataset
evicted before each round, as in test_cold.py). A round is the first LOCALITY_BATCHES batches
of a fresh iterator over a new epoch of LOCALITY_LENGTH samples (the epoch's order is computed
before the round, untimed); crops/s = crops of the round / mean round time. Recorded with it:
how random the order stays and how local its batches are (``order_statistics``: mean frame
distance between consecutive samples, frames and chunks per batch).

    python -m pytest bench/test_loader.py
"""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np
import pytest
from zcbench.data import DataCache, dataset_spec
from zcbench.session import Settings

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

from zcbench.loader import LOCALITY_ORDERS, PIPELINES, make_pipeline, order_statistics  # noqa: E402

CONTENT = "photo"
ZARR_FORMAT = 2
CROP = 960
BATCH = 8
WORKERS = 2
WARMUP_BATCHES = 2 * WORKERS + 2  # DataLoader's queue (prefetch_factor 2 per worker) + 2
GROUP = f"loader-{CONTENT}-v{ZARR_FORMAT}-{CROP}-b{BATCH}"

#: Targets of issue 5: (pipeline, baseline, minimum ratio of crops/s).
TARGETS = (
    ("croploader", "dataloader-zarr-python", 2.0),
    ("croploader", "dataloader-tensorstore", 1.5),
    ("dataloader-cropdataset", "dataloader-zarr-python", 1.5),
)

#: The locality benchmark: samples per epoch, batches per round, most rounds when cold.
LOCALITY_LENGTH = 512
LOCALITY_BATCHES = 4
LOCALITY_COLD_ROUNDS = 12
LOCALITY_GROUP = f"locality-{CONTENT}-v{ZARR_FORMAT}-{CROP}-b{BATCH}"

_RESULTS: dict[str, float] = {}
_LOCALITY: dict[tuple[str, str], dict[str, float]] = {}


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Any:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not (_RESULTS or _LOCALITY):
        return
    with capture.global_and_fixture_disabled():
        _write_summary(reporter)
        _write_locality_summary(reporter)


def _write_summary(reporter: Any) -> None:
    if not _RESULTS:
        return
    reporter.write_line("")
    reporter.write_line(f"{GROUP}: crops/s delivered as torch tensors")
    for name, rate in _RESULTS.items():
        reporter.write_line(f"  {name:<26} {rate:8.1f} crops/s")
    for name, base, target in TARGETS:
        if name in _RESULTS and base in _RESULTS:
            ratio = _RESULTS[name] / _RESULTS[base]
            verdict = "ok" if ratio >= target else "BELOW TARGET"
            reporter.write_line(f"  {name} / {base}: {ratio:.2f}x (target >= {target}x) {verdict}")


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_loader(
    benchmark: Any,
    pipeline: str,
    bench_data: DataCache,
    bench_settings: Settings,
) -> None:
    if pipeline == "dataloader-tensorstore":
        pytest.importorskip("tensorstore")
    spec = dataset_spec(CONTENT, ZARR_FORMAT)
    path = bench_data.array_path(spec)
    bench_data.warm(spec)
    rounds = bench_settings.rounds
    length = (WARMUP_BATCHES + rounds + 4) * BATCH
    it, owner = make_pipeline(
        pipeline,
        path,
        size=CROP,
        length=length,
        batch_size=BATCH,
        workers=WORKERS,
        threads=bench_settings.threads,
        zarr_format=ZARR_FORMAT,
    )
    try:
        first = next(it)  # starts the workers; checked against zarrcrop's own reads
        assert first.shape == (BATCH, spec.shape[1], CROP, CROP) and first.dtype == torch.uint8
        _check_first_batch(first, path, length)
        start = time.perf_counter()
        benchmark.pedantic(
            next, args=(it,), rounds=rounds, iterations=1, warmup_rounds=WARMUP_BATCHES - 1
        )
        wall = time.perf_counter() - start
        mean = float(benchmark.stats.stats.mean)
        crops_per_s = BATCH / mean
        _RESULTS[pipeline] = crops_per_s
        benchmark.extra_info.update(
            pipeline=pipeline,
            content=CONTENT,
            zarr_format=ZARR_FORMAT,
            crop_size=CROP,
            batch_size=BATCH,
            workers=0 if pipeline == "croploader" else WORKERS,
            threads=bench_settings.threads,
            crops_per_s=crops_per_s,
            wall_seconds=wall,
        )
    finally:
        del it, owner
        gc.collect()


def _check_first_batch(batch: Any, path: Any, length: int) -> None:
    """Batch 0 holds crops 0..7 of the shared plan, exactly as zarrcrop reads them."""
    import zarrcrop
    from zarrcrop.torch import CropDataset

    dataset = CropDataset(zarrcrop.open(path), CROP, length=length, seed=0)
    starts = dataset.sample_starts(range(BATCH))["__single__"]
    expected = dataset.arrays["__single__"].read_crops(starts, dataset.crop_shapes["__single__"])
    assert np.array_equal(batch.numpy(), expected[:, 0])


def _write_locality_summary(reporter: Any) -> None:
    if not _LOCALITY:
        return
    reporter.write_line("")
    reporter.write_line(f"{LOCALITY_GROUP}: CropLoader epoch orders")
    for (order, cache), info in _LOCALITY.items():
        reporter.write_line(
            f"  {order:<7} {cache:<5} {info['crops_per_s']:8.1f} crops/s, "
            f"{info['chunks_per_batch']:5.1f} chunks/batch, "
            f"{info['frames_per_batch']:4.2f} frames/batch, "
            f"frame distance {info['frame_distance']:4.2f}"
        )
    for cache in ("warm", "cold"):
        window, random = _LOCALITY.get(("window", cache)), _LOCALITY.get(("random", cache))
        if window and random:
            ratio = window["crops_per_s"] / random["crops_per_s"]
            reporter.write_line(f"  window / random ({cache}): {ratio:.2f}x crops/s")


@pytest.mark.benchmark(group=LOCALITY_GROUP)
@pytest.mark.parametrize("cache", ["warm", "cold"])
@pytest.mark.parametrize("order", LOCALITY_ORDERS)
def test_locality(
    benchmark: Any, order: str, cache: str, bench_data: DataCache, bench_settings: Settings
) -> None:
    import zarrcrop
    from zarrcrop.torch import CropDataset, CropLoader

    spec = dataset_spec(CONTENT, ZARR_FORMAT)
    path = bench_data.array_path(spec)
    group = bench_data.group_path(spec)
    rounds = bench_settings.rounds
    if cache == "cold":
        from test_cold import dataset_files, evict, is_cached

        evict(group)
        if all(is_cached(p) for p in dataset_files(group)):
            pytest.skip("evicting files from the page cache has no effect on this file system")
        rounds = min(rounds, LOCALITY_COLD_ROUNDS)
    else:
        bench_data.warm(spec)
    dataset = CropDataset(zarrcrop.open(path, strict=True), CROP, length=LOCALITY_LENGTH, seed=0)
    loader = CropLoader(dataset, BATCH, shuffle=order, prefetch=2)
    epochs = iter(range(10**9))
    running: list[Any] = []

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        # The previous round's iterator stops here, untimed (its thread may be reading ahead).
        while running:
            running.pop().close()
        loader.set_epoch(next(epochs))
        loader.order()  # computed (and kept) before the round
        if cache == "cold":
            evict(group)
        return (), {}

    def read_round() -> None:
        it = iter(loader)
        running.append(it)
        for _ in range(LOCALITY_BATCHES):
            next(it)

    try:
        benchmark.pedantic(read_round, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    finally:
        while running:
            running.pop().close()
    crops_per_s = LOCALITY_BATCHES * BATCH / float(benchmark.stats.stats.mean)
    stats = order_statistics(loader, range(rounds + 1), spec.chunks)
    _LOCALITY[(order, cache)] = {"crops_per_s": crops_per_s, **stats}
    benchmark.extra_info.update(
        locality=order,
        cache=cache,
        window=loader.window,
        content=CONTENT,
        zarr_format=ZARR_FORMAT,
        crop_size=CROP,
        batch_size=BATCH,
        batches_per_round=LOCALITY_BATCHES,
        length=LOCALITY_LENGTH,
        threads=bench_settings.threads,
        crops_per_s=crops_per_s,
        **stats,
    )
