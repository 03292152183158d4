"""Prefetch on object stores (``CropArray.prefetch`` and ``CropLoader``), against the real
SeaweedFS S3 server behind the counting latency proxy (tests/remote_fixtures): what a read will
ask the store for is fetched on threads of its own and held for that read, so the read itself
sends no request; results equal zarr-python's; failures of fetches ahead surface only in the
read, naming the URL; a forked child starts without the parent's fetches.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import (
    REMOTE_SPECS,
    ArraySpec,
    Blosc,
    create_array,
    expected_crops,
    make_data,
    wait_child,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from zarrcrop import _core

pytest_plugins = ["remote_fixtures"]

pytest.importorskip("obstore")


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory, s3_server):
    root = tmp_path_factory.mktemp("prefetch-data")
    out = {}
    for i, (name, spec) in enumerate(REMOTE_SPECS.items()):
        group = root / name
        mode = "random" if name == "v2raw" else "runs"
        data = make_data(spec.shape, spec.dtype, seed=i, mode=mode)
        zarr.open_group(str(group), mode="w", zarr_format=spec.zarr_format)
        create_array(group / "a", spec, data, missing=[(1, 0, 0)] if name == "v2small" else ())
        expected = np.asarray(zarr.open_array(str(group / "a"), mode="r")[:])
        bucket = f"zc-prefetch-{os.getpid()}-{i}"
        out[name] = (s3_server.dataset(group, bucket, "ds.zarr"), expected)
    return out


def _open(server, ds, endpoint=None):
    options = server.storage_options(endpoint)
    a = zarrcrop.open_group(ds.url, storage_options=options, strict=True)["a"]
    assert a.native, a.fallback_reason
    return a


def _starts(shape, size, rng, n):
    rows = [[int(rng.integers(0, shape[d] - size[d] + 1)) for d in range(len(shape))]
            for _ in range(n)]  # fmt: skip
    return np.array(rows)


@pytest.mark.parametrize("name", sorted(REMOTE_SPECS))
def test_a_prefetched_batch_is_read_without_a_request(s3_server, uploaded, latency_proxy,
                                                      name):  # fmt: skip
    ds, data = uploaded[name]
    proxy = latency_proxy(s3_server, rtt=0.002)
    a = _open(s3_server, ds, proxy.endpoint)
    zarrcrop.clear_index_cache()  # shard indexes and kept headers: fetched ahead too
    size = (1, 90, 110)
    starts = _starts(data.shape, size, np.random.default_rng(4), 6)
    assert a.prefetch(starts, size) > 0
    _core._testing.wait_fetch_ahead()
    assert proxy.stats()["requests"] > 0
    proxy.reset()
    got = a.read_crops(starts, size)
    assert proxy.stats()["requests"] == 0, proxy.stats()
    np.testing.assert_array_equal(got, expected_crops(data, starts, size, 0))


def test_croploader_order_keeps_what_the_next_batch_shares(s3_server, uploaded, latency_proxy):
    """CropLoader asks for batches i + 2 and i + 1, then reads batch i. Bytes that batch i
    takes and batch i + 1 was asked for too stay held for it: no read sends a request. Bytes
    no prefetch asks for again are dropped a few prefetches later: held bytes serve the reads
    they were asked for, they are not a cache."""
    ds, data = uploaded["v2small"]  # chunk objects read whole: a shared chunk, the same range
    proxy = latency_proxy(s3_server, rtt=0.002)
    a = _open(s3_server, ds, proxy.endpoint)
    size = (1, 30, 40)
    rng = np.random.default_rng(11)
    crops = np.array([[0, int(rng.integers(0, 71)), int(rng.integers(0, 101))] for _ in range(7)])
    batches = [crops[i : i + 2] for i in range(6)]  # batch i shares crop i + 1 with batch i + 1
    a.prefetch(batches[0], size)
    for i, batch in enumerate(batches):
        for ahead in (i + 2, i + 1):
            if ahead < len(batches):
                a.prefetch(batches[ahead], size)
        _core._testing.wait_fetch_ahead()
        proxy.reset()
        got = a.read_crops(batch, size)
        assert proxy.stats()["requests"] == 0, (i, proxy.stats())
        np.testing.assert_array_equal(got, expected_crops(data, batch, size, 0))
    far = np.array([[2, 150, 250]])  # frame 2: asks for nothing the batches used (frame 0)
    for _ in range(3):
        a.prefetch(far, size)
    _core._testing.wait_fetch_ahead()
    proxy.reset()
    np.testing.assert_array_equal(
        a.read_crops(batches[-1], size), expected_crops(data, batches[-1], size, 0)
    )
    assert proxy.stats()["requests"] > 0


def test_shared_bytes_outlast_a_slow_training_step(s3_server, uploaded, latency_proxy):
    """Bytes batch 0 took that batch 1 was asked for too stay held while the loop spends
    longer than the 2 s a taken range is otherwise kept (a slow training step)."""
    ds, data = uploaded["v2small"]
    proxy = latency_proxy(s3_server, rtt=0.002)
    a = _open(s3_server, ds, proxy.endpoint)
    size = (1, 30, 40)
    b0, b1 = np.array([[0, 10, 20], [0, 50, 60]]), np.array([[0, 50, 60], [0, 90, 130]])
    a.prefetch(b0, size)
    a.prefetch(b1, size)
    _core._testing.wait_fetch_ahead()
    proxy.reset()
    np.testing.assert_array_equal(a.read_crops(b0, size), expected_crops(data, b0, size, 0))
    time.sleep(2.5)
    np.testing.assert_array_equal(a.read_crops(b1, size), expected_crops(data, b1, size, 0))
    assert proxy.stats()["requests"] == 0, proxy.stats()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(sorted(REMOTE_SPECS)),
    seed=st.integers(0, 2**16),
    n_ahead=st.integers(1, 5),
    n_read=st.integers(1, 5),
    budget=st.sampled_from([0, 1, 70_000, 300_000, 256 << 20]),
    wait=st.booleans(),
)
def test_reads_after_any_prefetch_equal_zarr_python(s3_server, uploaded, name, seed, n_ahead,
                                                    n_read, budget, wait):  # fmt: skip
    """Prefetches of other crops, overlapping ones, partial budgets, reads while fetches are
    still in flight: every read equals zarr-python's."""
    ds, data = uploaded[name]
    a = _open(s3_server, ds)
    rng = np.random.default_rng(seed)
    size = (1, int(rng.integers(1, 130)), int(rng.integers(1, 170)))
    ahead = _starts(data.shape, size, rng, n_ahead)
    read = np.concatenate([ahead[: int(rng.integers(0, n_ahead + 1))],
                           _starts(data.shape, size, rng, n_read)])  # fmt: skip
    if rng.integers(0, 2):
        zarrcrop.clear_index_cache()
    asked = a.prefetch(ahead, size, budget=budget)
    assert 0 <= asked <= budget
    if wait:
        _core._testing.wait_fetch_ahead()
    np.testing.assert_array_equal(a.read_crops(read, size), expected_crops(data, read, size, 0))
    _core._testing.wait_fetch_ahead()


def _served_v2(http_server, tmp_path, seed: int):
    """The "v2" array with new data, served over HTTP: (server, array opened strict, data)."""
    spec = REMOTE_SPECS["v2"]
    data = make_data(spec.shape, spec.dtype, seed=seed, mode="runs")
    create_array(tmp_path / "g" / "a", spec, data)
    server = http_server(tmp_path)
    return server, zarrcrop.open(server.url("g/a"), strict=True), data


def test_prefetch_failures_surface_in_the_read_naming_the_url(http_server, tmp_path):
    from helpers.servers import Fault

    server, a, data = _served_v2(http_server, tmp_path, seed=1)
    server.faults = [Fault(pattern="*g/a/0.0.1", status=403)]
    starts = np.array([[0, 0, 300]])
    # The fetch ahead fails quietly; the read reports it, naming the chunk.
    a.prefetch(starts, (1, 100, 100))
    _core._testing.wait_fetch_ahead()
    with pytest.raises(PermissionError, match=r"0\.0\.1.*403"):
        a.read_crops(starts, (1, 100, 100))
    server.faults = []
    got = a.read_crops(starts, (1, 100, 100))
    np.testing.assert_array_equal(got, expected_crops(data, starts, (1, 100, 100), 0))


def test_the_server_dying_while_fetching_ahead_fails_the_read(http_server, tmp_path):
    server, a, _ = _served_v2(http_server, tmp_path, seed=2)
    a._layout.fetch.client.retry = zarrcrop.remote.RetryPolicy(attempts=2, backoff=0.01, budget=2)
    server.die_after = 3
    t0 = time.monotonic()
    a.prefetch(np.array([[0, 0, 0], [1, 200, 300]]), (1, 300, 400))
    with pytest.raises(OSError, match=server.endpoint.split("//")[1]):
        a.read_crops(np.array([[0, 0, 0], [1, 200, 300]]), (1, 300, 400))
    _core._testing.wait_fetch_ahead()
    assert time.monotonic() - t0 < 60


def test_budget_bounds_what_is_fetched_ahead(s3_server, uploaded, latency_proxy):
    ds, data = uploaded["v2"]
    proxy = latency_proxy(s3_server)
    a = _open(s3_server, ds, proxy.endpoint)
    starts = _starts(data.shape, (1, 200, 300), np.random.default_rng(7), 8)
    _core._testing.wait_fetch_ahead()
    proxy.reset()
    assert a.prefetch(starts, (1, 200, 300), budget=0) == 0
    _core._testing.wait_fetch_ahead()
    assert proxy.stats()["requests"] == 0
    zarrcrop.clear_index_cache()
    a.prefetch(starts, (1, 200, 300), budget=100_000)
    _core._testing.wait_fetch_ahead()
    assert 0 < proxy.stats()["bytes_down"] <= 100_000 + 64 * 1024, proxy.stats()
    got = a.read_crops(starts, (1, 200, 300))
    np.testing.assert_array_equal(got, expected_crops(data, starts, (1, 200, 300), 0))


def test_a_forked_child_reads_without_the_parents_fetches(s3_server, uploaded):
    ds, data = uploaded["v3sharded"]
    a = _open(s3_server, ds)
    size = (1, 200, 300)
    starts = _starts(data.shape, size, np.random.default_rng(11), 6)
    zarrcrop.clear_index_cache()
    a.prefetch(starts, size)  # fetches in flight while the process forks
    pid = os.fork()
    if pid == 0:  # the child: its own fetches, the same answer
        code = 1
        try:
            ok = np.array_equal(a.read_crops(starts, size), expected_crops(data, starts, size, 0))
            code = 0 if ok else 2
        finally:
            os._exit(code)
    np.testing.assert_array_equal(a.read_crops(starts, size), expected_crops(data, starts, size, 0))
    assert wait_child(pid, 120) == 0


def test_croploader_from_s3_prefetches_and_equals_zarr_python(s3_server, s3_dataset, tmp_path,
                                                              latency_proxy):  # fmt: skip
    pytest.importorskip("torch")
    from zarrcrop.torch import CropDataset, CropLoader

    spec = ArraySpec(2, (4, 3, 256, 350), (1, 3, 128, 175), "uint8", Blosc("zstd", 3, "bitshuffle"))
    data = make_data(spec.shape, spec.dtype, seed=3, mode="runs")
    zarr.open_group(str(tmp_path / "g"), mode="w", zarr_format=2)
    create_array(tmp_path / "g" / "rgb", spec, data)
    ds = s3_dataset(tmp_path / "g", prefix="ds.zarr")
    proxy = latency_proxy(s3_server, rtt=0.005)
    group = zarrcrop.open_group(ds.url, storage_options=s3_server.storage_options(proxy.endpoint),
                                strict=True)  # fmt: skip
    dataset = CropDataset(group["rgb"], crop=(96, 128), length=24, seed=5)
    loader = CropLoader(dataset, 4, shuffle=True, seed=2, copy=True, prefetch=2)
    batches = loader.batches()
    n = 0
    for b, batch in enumerate(loader):
        starts = dataset.sample_starts(batches[b])["__single__"]
        expected = expected_crops(data, starts, (1, 3, 96, 128), 0)
        np.testing.assert_array_equal(batch.numpy()[:, None], expected)
        n += 1
    assert n == len(batches) == 6
    assert proxy.stats()["requests"] > 0
