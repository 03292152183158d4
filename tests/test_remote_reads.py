"""Native reads from object stores, against real servers on 127.0.0.1 (tests/remote_fixtures):
SeaweedFS's S3 API (through s3fs URLs, zarr's ObjectStore over obstore, AWS environment
variables) and a Range HTTP server, with a latency proxy counting requests. Every result must
equal zarr-python's; failures (403, 404 on a shard, truncated replies, a server that dies,
slow replies past the timeout) raise errors naming the URL and chunk.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import REMOTE_SPECS, ArraySpec, Blosc, create_array, expected_crops, make_data
from helpers.loader_workers import expected_total, run_loader_workers
from helpers.servers import Fault

pytest_plugins = ["remote_fixtures"]

pytest.importorskip("obstore")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Local zarr datasets to upload: v2 Blosc zstd (large chunks, read piecewise), v2 with
    small chunks and a missing chunk, v3 sharded (index at the end), v3 zstd chain."""
    root = tmp_path_factory.mktemp("remote-data")
    specs = {k: v for k, v in REMOTE_SPECS.items() if k != "v2raw"}
    out = {}
    for i, (name, spec) in enumerate(specs.items()):
        group = root / name
        data = make_data(spec.shape, spec.dtype, seed=i, mode="runs" if i % 2 else "random")
        zarr.open_group(str(group), mode="w", zarr_format=spec.zarr_format)
        create_array(group / "a", spec, data, missing=[(1, 0, 0)] if name == "v2small" else ())
        out[name] = (group, np.asarray(zarr.open_array(str(group / "a"), mode="r")[:]))
    # v3 sharded with the index at the start of each shard.
    group = root / "v3start"
    data = make_data((3, 512, 700), "uint16", seed=9, mode="runs")
    zarr.open_group(str(group), mode="w", zarr_format=3)
    sharding = zarr.codecs.ShardingCodec(
        chunk_shape=(1, 128, 175),
        codecs=[zarr.codecs.BytesCodec(), zarr.codecs.BloscCodec(cname="zstd", clevel=3)],
        index_location="start",
    )
    z = zarr.create_array(store=str(group / "a"), shape=data.shape, chunks=(1, 256, 350),
                          dtype="uint16", serializer=sharding, compressors=None)  # fmt: skip
    z[...] = data
    out["v3start"] = (group, data)
    return out


def _proxied(s3_server, s3_dataset, datasets, latency_proxy, rtt):
    """The "v2" array uploaded to S3, opened through a latency proxy: (array, data, proxy)."""
    group, data = datasets["v2"]
    ds = s3_dataset(group, prefix="ds.zarr")
    proxy = latency_proxy(s3_server, rtt=rtt)
    a = zarrcrop.open_group(
        ds.url, storage_options=s3_server.storage_options(proxy.endpoint), strict=True
    )["a"]
    return a, data, proxy


def _crops(shape, rng, n=4, size=(1, 150, 170)):
    return np.array(
        [[int(rng.integers(0, shape[d] - size[d] + 1)) for d in range(3)] for _ in range(n)]
    ), size


def test_connections_are_reused_across_reads_and_stay_bounded(s3_server, s3_dataset, datasets,
                                                              latency_proxy):  # fmt: skip
    # The I/O threads are native threads: each call into Python gets a new thread state, so a
    # pool per thread opened a connection per request and kept them all open (file descriptors
    # grew with every read).
    a, data, proxy = _proxied(s3_server, s3_dataset, datasets, latency_proxy, rtt=0.002)
    client = a._layout.fetch.client
    rng = np.random.default_rng(11)
    a.read_crops(*_crops(data.shape, rng, n=8))  # opens the connections the reads need
    fds = len(os.listdir("/proc/self/fd"))
    proxy.reset()
    for _ in range(12):
        starts, size = _crops(data.shape, rng, n=8)
        got = a.read_crops(starts, size)
        np.testing.assert_array_equal(got, expected_crops(data, starts, size, 0))
    stats = proxy.stats()
    assert stats["requests"] >= 24, stats
    # Connections opened during the 12 reads: only when more requests are in flight than were
    # idle, never one per request.
    assert stats["connections"] <= stats["max_in_flight"], stats
    assert stats["connections"] < stats["requests"] / 2, stats
    assert client.open_connections <= 32 + client.max_idle
    assert len(os.listdir("/proc/self/fd")) <= fds + stats["max_in_flight"]


def test_connections_the_server_closed_while_idle_are_replaced_within_the_same_try(
    http_server, datasets
):
    group, data = datasets["v2"]
    server = http_server(group.parent)
    a = zarrcrop.open(server.url(f"{group.name}/a"), strict=True)
    client = a._layout.fetch.client
    # One try per request: a stale pooled connection must not use it up.
    client.retry = zarrcrop.remote.RetryPolicy(attempts=1, timeout=10)
    rng = np.random.default_rng(5)
    for _ in range(3):
        starts, size = _crops(data.shape, rng, n=6)
        got = a.read_crops(starts, size)
        assert client.open_connections > 0
        server.close_idle_connections()  # as a server's keep-alive timeout does
        time.sleep(0.05)
        np.testing.assert_array_equal(got, expected_crops(data, starts, size, 0))


@pytest.mark.parametrize("name", ["v2", "v2small", "v3sharded", "v3start", "v3zstd"])
def test_s3_urls_read_natively_equal_zarr_python(s3_server, s3_dataset, datasets, name):
    group, data = datasets[name]
    ds = s3_dataset(group, prefix="ds.zarr")
    opts = s3_server.storage_options()
    g = zarrcrop.open_group(ds.url, storage_options=opts, strict=True)
    a = g["a"]
    assert a.native, a.fallback_reason
    rng = np.random.default_rng(1)
    starts, size = _crops(data.shape, rng)
    got = a.read_crops(starts, size)
    np.testing.assert_array_equal(got, expected_crops(data, starts, size, 0))
    np.testing.assert_array_equal(a[1, 10:190:3, ::-2], data[1, 10:190:3, ::-2])
    np.testing.assert_array_equal(a[:], data)


def test_objectstore_and_environment_credentials(s3_server, s3_dataset, datasets, monkeypatch):
    from zarr.storage import ObjectStore

    group, data = datasets["v2"]
    ds = s3_dataset(group, prefix="ds.zarr")
    # zarr's ObjectStore over obstore's S3Store: the same credentials, natively.
    store = ObjectStore(ds.store(rooted=True), read_only=True)
    a = zarrcrop.open(store, "a", strict=True)
    np.testing.assert_array_equal(a[:], data)
    # The AWS environment variables, as users set them (no storage_options).
    for k, v in ds.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    b = zarrcrop.open(ds.url + "/a", strict=True)
    np.testing.assert_array_equal(b[0, :100, :100], data[0, :100, :100])


def test_a_batch_is_fetched_together_in_few_requests(s3_server, s3_dataset, datasets,
                                                     latency_proxy):  # fmt: skip
    # A round trip long enough that requests sent together overlap at the proxy even when the
    # client is slow to send them (under ASan at 5 ms, 3 of them did).
    a, data, proxy = _proxied(s3_server, s3_dataset, datasets, latency_proxy, rtt=0.05)
    rng = np.random.default_rng(3)
    starts, size = _crops(data.shape, rng, n=16)
    proxy.reset()
    got = a.read_crops(starts, size)
    stats = proxy.stats()
    chunks = {
        (t, y // 256, x // 350) for t, y0, x0 in starts
        for y in (y0, y0 + size[1] - 1) for x in (x0, x0 + size[2] - 1)
    }  # fmt: skip
    # No HEAD before GETs; a first read and a span or two of each chunk, not a request per
    # block (this data is random: its chunks are stored raw, read in windows).
    assert stats["methods"].get("HEAD", 0) == 0
    assert stats["requests"] <= 3 * len(chunks), stats["requests"]
    assert stats["max_in_flight"] >= 4  # fetched together, not one at a time
    np.testing.assert_array_equal(got, expected_crops(data, starts, size, 0))


def test_shard_indexes_are_read_once(s3_server, s3_dataset, datasets, latency_proxy):
    group, data = datasets["v3sharded"]
    ds = s3_dataset(group, prefix="ds.zarr")
    proxy = latency_proxy(s3_server)
    a = zarrcrop.open_group(
        ds.url, storage_options=s3_server.storage_options(proxy.endpoint), strict=True
    )["a"]
    zarrcrop.clear_index_cache()
    np.testing.assert_array_equal(a[0, :200, :300], data[0, :200, :300])
    proxy.reset()
    np.testing.assert_array_equal(a[0, :200, :300], data[0, :200, :300])
    # The second read: inner chunks only, no suffix range for the index again.
    assert not any(r.startswith("bytes=-") for r in proxy.stats()["ranges"])


def test_http_reads_and_failures(http_server, datasets, tmp_path):
    group, data = datasets["v2"]
    server = http_server(group.parent)
    url = server.url(f"{group.name}/a")
    a = zarrcrop.open(url, strict=True)
    np.testing.assert_array_equal(a[:], data)
    # 403 on one chunk: PermissionError naming the URL and the chunk.
    server.faults = [Fault(pattern=f"*{group.name}/a/0.1.0", status=403)]
    with pytest.raises(PermissionError, match=r"0\.1\.0.*403"):
        a[0]
    # A reply cut short, every time: an error, never a short copy.
    server.faults = [Fault(pattern=f"*{group.name}/a/1.0.1", truncate=100)]
    with pytest.raises((zarrcrop.ChunkError, OSError), match=r"1\.0\.1"):
        a[1]
    # A transient 503: retried, the read succeeds.
    server.faults = [Fault(pattern=f"*{group.name}/a/2.0.0", status=503, times=2)]
    np.testing.assert_array_equal(a[2], data[2])
    server.faults = []


def test_the_client_tells_progress_as_a_body_streams_in_and_again_after_a_retry(
    http_server, tmp_path
):
    from zarrcrop.remote.http import HttpClient, RetryPolicy

    blob = np.random.default_rng(3).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(blob)
    server = http_server(tmp_path)
    client = HttpClient(RetryPolicy(backoff=0.01))
    try:
        told: list[tuple[int, str | None]] = []
        out = bytearray(600_000)
        got = client.fetch(server.url("blob.bin"), 1000, len(out), False, memoryview(out),
                           lambda n, v: told.append((n, v)))  # fmt: skip
        assert got[:4] == (True, len(blob), 1000, len(out)) and out == blob[1000:601_000]
        written = [n for n, _ in told]
        # In steps, ascending, never the whole (the return tells that), with the ETag.
        assert len(written) >= 3 and written == sorted(written) and written[-1] < len(out)
        assert all(v == got[4] for _, v in told)
        # A body cut short: retried, and progress starts again from the beginning.
        server.faults = [Fault(pattern="*blob.bin", truncate=300_000, times=1)]
        told.clear()
        out[:] = bytes(len(out))
        client.fetch(server.url("blob.bin"), 0, len(out), False, memoryview(out),
                     lambda n, v: told.append((n, v)))  # fmt: skip
        assert out == blob[: len(out)]
        written = [n for n, _ in told]
        assert any(b < a for a, b in itertools.pairwise(written))
    finally:
        client.close()
        server.faults = []


def test_missing_shard_reads_as_fill_value(s3_server, s3_dataset, datasets):
    group, _data = datasets["v3sharded"]
    ds = s3_dataset(group, prefix="ds.zarr")
    a = zarrcrop.open_group(ds.url, storage_options=s3_server.storage_options(), strict=True)["a"]
    import obstore

    shards = sorted(k for k in ds.keys if k.startswith("ds.zarr/a/") and "zarr.json" not in k)
    obstore.delete(ds.store(), shards[0])  # bucket-relative key
    expected = zarr.open_group(ds.url, mode="r", storage_options=s3_server.storage_options())["a"][
        :
    ]
    np.testing.assert_array_equal(a[:], expected)


SLOW = """
import sys, time, zarrcrop
from zarrcrop.remote import RetryPolicy
url = sys.argv[1]
a = zarrcrop.open(url, strict=True)
a._layout.fetch.client.retry = RetryPolicy(attempts=2, backoff=0.01, budget=5, timeout=0.5)
t0 = time.monotonic()
try:
    a[0]
    print("finished")
except OSError as e:
    print(type(e).__name__, round(time.monotonic() - t0, 2), e)
"""


def test_a_server_slower_than_the_timeout_is_an_error(http_server, datasets, tmp_path):
    group, _ = datasets["v2"]
    server = http_server(group.parent)
    server.faults = [Fault(pattern=f"*{group.name}/a/0.*", delay=3.0)]
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(SLOW))
    proc = subprocess.run(
        [sys.executable, str(script), server.url(f"{group.name}/a")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.strip()
    assert out.startswith(("TimeoutError", "ConnectionError")), out
    assert ("0." in out and "timeout" in out.lower()) or "no reply" in out, out


def test_the_server_dying_mid_read_is_an_error_naming_the_url(http_server, datasets):
    group, data = datasets["v2"]
    server = http_server(group.parent)
    a = zarrcrop.open(server.url(f"{group.name}/a"), strict=True)
    np.testing.assert_array_equal(a[0, :10, :10], data[0, :10, :10])
    a._layout.fetch.client.retry = zarrcrop.remote.RetryPolicy(attempts=2, backoff=0.01, budget=2)
    server.die_after = 2
    t0 = time.monotonic()
    with pytest.raises(OSError, match=server.endpoint.split("//")[1]):
        a[:]
    assert time.monotonic() - t0 < 30


def test_dataloader_workers_fork_and_spawn_after_the_parent_read(s3_server, s3_dataset,
                                                                 datasets):  # fmt: skip
    pytest.importorskip("torch")
    group, data = datasets["v2"]
    ds = s3_dataset(group, prefix="ds.zarr")
    out = run_loader_workers(ds.url, s3_server.storage_options())
    total = str(expected_total(data))
    assert out.split() == ["fork", total, "spawn", total], out


def test_remote_reads_release_their_processes(s3_server):
    # The session's server is the only weed process this module started.
    assert s3_server.pid is not None and os.path.exists(f"/proc/{s3_server.pid}")


def test_paths_to_local_arrays_still_read_locally(tmp_path):
    path = tmp_path / "l.zarr"
    data = make_data((2, 30, 30), "uint8", seed=1)
    create_array(path, ArraySpec(2, data.shape, (1, 10, 10), "uint8", Blosc("lz4", 5, "shuffle")),
                 data)  # fmt: skip
    a = zarrcrop.open(path)
    assert a.native and a._layout.fetch is None
    assert Path(a._layout.root).is_dir()


def test_many_python_threads_read_one_remote_array(s3_server, s3_dataset, datasets):
    from concurrent.futures import ThreadPoolExecutor

    group, data = datasets["v3sharded"]
    ds = s3_dataset(group, prefix="ds.zarr")
    a = zarrcrop.open_group(ds.url, storage_options=s3_server.storage_options(), strict=True)["a"]
    rng = np.random.default_rng(9)
    jobs = [_crops(data.shape, rng, n=3) for _ in range(24)]

    def read(job):
        starts, size = job
        return a.read_crops(starts, size)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, jobs))
    for (starts, size), got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, expected_crops(data, starts, size, 0))


def test_a_chunk_fetched_whole_keeps_its_header(tmp_path, s3_server, s3_dataset, latency_proxy):
    # Chunks of ~150-300 KB compressed: at 20 ms a round trip costs more than moving one, so
    # once the costs are measured a chunk's first read fetches all of it.
    spec = ArraySpec(2, (2, 1024, 1024), (1, 1024, 1024), "uint16", Blosc("zstd", 1, "shuffle"))
    data = make_data(spec.shape, spec.dtype, seed=5, mode="runs")
    zarr.open_group(str(tmp_path / "g"), mode="w", zarr_format=2)
    create_array(tmp_path / "g" / "a", spec, data)
    ds = s3_dataset(tmp_path / "g", prefix="ds.zarr")
    proxy = latency_proxy(s3_server, rtt=0.02)
    a = zarrcrop.open_group(
        ds.url, storage_options=s3_server.storage_options(proxy.endpoint), strict=True
    )["a"]
    for _ in range(3):  # the costs: round trips, transfer rate, object sizes
        zarrcrop.clear_index_cache()
        np.testing.assert_array_equal(a[:], data)
    zarrcrop.clear_index_cache()
    proxy.reset()
    np.testing.assert_array_equal(a[1, :8, :8], data[1, :8, :8])
    first = proxy.stats()
    assert first["requests"] == 1, first["ranges"]  # the whole chunk, in one round trip
    proxy.reset()
    np.testing.assert_array_equal(a[1, -8:, -8:], data[1, -8:, -8:])
    second = proxy.stats()
    # Its header was kept: only the last rows' blocks, one request.
    assert second["requests"] == 1, second["ranges"]
    assert second["bytes_down"] < first["bytes_down"] / 2, (first, second)
