"""Ranged GETs over HTTP(S) for the native reader: the object-store client of zarrcrop.

The C++ core's I/O threads call :meth:`HttpClient.fetch` many at a time (each on its own
thread, with the GIL released while the socket waits). Keep-alive connections are pooled per
host: a request takes an idle one (or opens one) and gives it back once its reply has been read
whole, so the connections open never exceed the requests in flight plus ``max_idle`` per host.
(A pool per thread does not work here: a native thread gets a new Python thread state on every
call into Python, and with it an empty ``threading.local``.) Nothing here survives ``fork()``
in a usable state, and nothing needs to: a child never uses a connection its parent opened
(the pid is checked), so DataLoader workers started with fork read natively after the parent
has read. Only the standard library is used: no event loop or runtime thread that a fork would
leave behind.
"""

from __future__ import annotations

import errno
import http.client
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FetchResult", "HttpClient", "Progress", "RetryPolicy"]

#: (found, object_size, offset of the bytes written, bytes written, version): what
#: ``_core.CropReader``'s ``fetch`` returns.
FetchResult = tuple[bool, int, int, int, "str | None"]

#: ``progress(written, version)``: the first ``written`` bytes of ``out`` are in, from the
#: object at ``version`` (the ETag). The core decodes blocks while the rest streams in.
Progress = Callable[[int, "str | None"], None]

# A body is read into ``out`` in steps of this many bytes, ``progress`` told after each: about
# a Blosc block of a photo chunk, so each block can be decoded as soon as it is in.
_STREAM_STEP = 128 << 10

# Idle connections older than this are closed rather than reused: servers close idle
# keep-alive connections after 5-60 s (S3 about 20 s), and a request sent on one they closed
# fails.
_IDLE_SECONDS = 15.0

# Taken by the first request in a forked child to replace the pool it inherited (made again in
# the child: a thread of the parent may have held it at the fork).
_FORK_LOCK = threading.Lock()


def _new_fork_lock() -> None:
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_fork_lock)

# Statuses worth another try: throttling and server-side failures.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures (connection errors, timeouts, 408/429/5xx, a body cut short)
    are retried: up to ``attempts`` tries, waiting ``backoff * 2**k`` seconds (with jitter,
    at most ``max_backoff``) between them, all within ``budget`` seconds from the first try.
    Each try waits at most ``timeout`` seconds for the server (connect, then each read)."""

    attempts: int = 5
    backoff: float = 0.1
    max_backoff: float = 2.0
    budget: float = 60.0
    timeout: float = 30.0


class HttpClient:
    """Ranged GETs of objects under base URLs, over a pool of keep-alive connections per host.

    ``sign(method, url, headers)`` (optional) adds authentication headers to a request (S3's
    SigV4, a bearer token); it may be called from several threads at once. ``max_idle``: idle
    connections kept per host (more are closed as their requests end).
    """

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        sign: Callable[[str, str, dict[str, str]], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 64,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.sign = sign
        self.ssl_context = ssl_context
        self.max_idle = max_idle
        self._reset_pool()

    def _reset_pool(self) -> None:
        # Idle connections by (scheme, host), and every connection this process opened (idle
        # or in use), so that close() and garbage collection close them all.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str], list[tuple[float, http.client.HTTPConnection]]] = {}
        self._open: set[http.client.HTTPConnection] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_pid", "_lock", "_idle", "_open"):
            state.pop(name)
        state["ssl_context"] = None  # not picklable; the default context is made again
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("max_idle", 64)
        self.__dict__.update(state)
        self._reset_pool()

    def close(self) -> None:
        """Close every keep-alive connection (of this process; a forked child's are its own)."""
        if self._pid != os.getpid():
            return  # the parent's: its sockets are the parent's to close
        with self._lock:
            conns, self._open, self._idle = self._open, set(), {}
        for conn in conns:
            conn.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    @property
    def open_connections(self) -> int:
        """Connections this process has open (idle or in use)."""
        return len(self._open) if self._pid == os.getpid() else 0

    # ---------------------------------------------------------------- connections

    def _checkout(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """(connection, reused): an idle connection to the host, or a new one; the caller gives
        it back with _checkin once the reply has been read whole, or _discard."""
        if self._pid != os.getpid():
            with _FORK_LOCK:  # the first call in a forked child: the parent's pool is not ours
                if self._pid != os.getpid():
                    self._reset_pool()
        stale: list[http.client.HTTPConnection] = []
        found = None
        with self._lock:
            idle = self._idle.get((scheme, netloc))
            now = time.monotonic()
            while idle and found is None:
                since, conn = idle.pop()
                if now - since < _IDLE_SECONDS:
                    found = conn
                else:
                    stale.append(conn)
        for conn in stale:
            self._discard(conn)
        if found is not None:
            return found, True
        return self._connect(scheme, netloc), False

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        timeout = self.retry.timeout
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(netloc, timeout=timeout)
        with self._lock:
            self._open.add(conn)
        return conn

    def _checkin(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if conn in self._open:  # not closed by close() meanwhile
                idle = self._idle.setdefault((scheme, netloc), [])
                if len(idle) < self.max_idle:
                    idle.append((time.monotonic(), conn))
                    return
        self._discard(conn)

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._lock:
            self._open.discard(conn)

    # ---------------------------------------------------------------- requests

    def fetch(
        self,
        url: str,
        offset: int,
        length: int,
        from_end: bool,
        out: memoryview,
        progress: Progress | None = None,
    ) -> FetchResult:
        """Up to ``length`` bytes of the object at ``url`` from ``offset`` (with ``from_end``:
        its last ``length`` bytes) into ``out``. Returns (found, object size, offset of the
        bytes written, bytes written, version (the ETag)); (False, 0, 0, 0, None) for a missing
        object (404). Raises PermissionError (401/403), FileNotFoundError is never raised,
        OSError / TimeoutError after the retry policy gave up, ValueError when a reply
        contradicts the request (a ChunkError in the reader). ``progress`` (optional) is told
        the bytes of ``out`` written so far as the body streams in (from 0 again on a retry)."""
        if length <= 0:
            return (True, 0, 0, 0, None)  # nothing asked for: the reader never does this
        if from_end:
            byte_range = f"bytes=-{length}"
        else:
            byte_range = f"bytes={offset}-{offset + length - 1}"
        policy = self.retry
        started = time.monotonic()
        last: BaseException | None = None
        for attempt in range(policy.attempts):
            if attempt:
                pause = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
                pause *= 0.5 + random.random()  # jitter: many threads must not retry in step
                if time.monotonic() + pause - started > policy.budget:
                    break
                time.sleep(pause)
            try:
                return self._get(url, byte_range, offset, length, from_end, out, progress)
            except _Retry as exc:
                last = exc.cause
            except TimeoutError as exc:
                last = exc
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                if isinstance(exc, (PermissionError, FileNotFoundError)):
                    raise
                last = exc
        # OSError(errno, ...) picks the subclass: TimeoutError, ConnectionRefusedError, ...
        if isinstance(last, (TimeoutError, socket.timeout)):
            raise OSError(
                errno.ETIMEDOUT,
                f"GET {url} ({byte_range}): no reply within {policy.timeout:g} s, "
                f"{policy.attempts} tries",
            ) from last
        code = getattr(last, "errno", None) or errno.EIO
        raise OSError(
            code,
            f"GET {url} ({byte_range}) failed after {policy.attempts} tries within "
            f"{policy.budget:g} s: {last}",
        ) from last

    def _get(
        self,
        url: str,
        byte_range: str,
        offset: int,
        length: int,
        from_end: bool,
        out: memoryview,
        progress: Progress | None,
    ) -> FetchResult:
        parts = urllib.parse.urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"Host": parts.netloc, "Range": byte_range, "Accept-Encoding": "identity"}
        if self.sign is not None:
            self.sign("GET", url, headers)
        conn, reused = self._checkout(parts.scheme, parts.netloc)
        try:
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed the idle connection (its keep-alive timeout) before this
                # request reached it: a new connection, within the same try.
                self._discard(conn)
                conn = self._connect(parts.scheme, parts.netloc)
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
            result = self._reply(url, byte_range, resp, offset, length, from_end, out, progress)
        except BaseException:
            self._discard(conn)  # the reply may be half read
            raise
        if resp.will_close or not resp.isclosed():
            self._discard(conn)  # the server ends it, or bytes of the body are left
        else:
            self._checkin(parts.scheme, parts.netloc, conn)
        return result

    def _reply(
        self,
        url: str,
        byte_range: str,
        resp: http.client.HTTPResponse,
        offset: int,
        length: int,
        from_end: bool,
        out: memoryview,
        progress: Progress | None,
    ) -> FetchResult:
        status = resp.status
        etag = resp.getheader("ETag")
        if status == 404:
            resp.read()
            return (False, 0, 0, 0, None)
        if status in (401, 403):
            body = resp.read(2048).decode("utf-8", "replace")
            raise PermissionError(13, f"GET {url}: {status} {resp.reason} {_brief(body)}".strip())
        if status in _RETRY_STATUS:
            resp.read()
            raise _Retry(ConnectionError(f"GET {url}: {status} {resp.reason}"))
        if status == 416:  # the range starts past the end: an empty object, or offset >= size
            resp.read()
            size = _total(resp.getheader("Content-Range"))
            if size is None:
                raise ValueError(f"GET {url} ({byte_range}): 416 without the object's size")
            return (True, size, min(offset, size), 0, etag)
        if status == 206:
            got = _CONTENT_RANGE.fullmatch((resp.getheader("Content-Range") or "").strip())
            if got is None or got.group(1) is None or got.group(3) == "*":
                raise ValueError(f"GET {url} ({byte_range}): 206 without a usable Content-Range")
            start, end, size = int(got.group(1)), int(got.group(2)), int(got.group(3))
            count = end - start + 1
            expect_start = max(0, size - length) if from_end else offset
            if start != expect_start or count > length or end >= size:
                raise ValueError(
                    f"GET {url} ({byte_range}): the server sent bytes {start}-{end} of {size}"
                )
            _read_exactly(resp, out, count, url, progress, etag)
            return (True, size, start, count, etag)
        if status == 200:  # the server ignored the range: the whole object follows
            size_header = resp.getheader("Content-Length")
            if size_header is None:
                raise ValueError(f"GET {url}: 200 without Content-Length")
            size = int(size_header)
            start = max(0, size - length) if from_end else min(offset, size)
            count = max(0, min(length, size - start))
            _skip(resp, start, url)
            _read_exactly(resp, out, count, url, progress, etag)
            resp.read()  # the rest, so that the connection can be used again
            return (True, size, start, count, etag)
        body = resp.read(2048).decode("utf-8", "replace")
        raise OSError(5, f"GET {url} ({byte_range}): {status} {resp.reason} {_brief(body)}")


class _Retry(Exception):
    """A transient failure: try again."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _total(content_range: str | None) -> int | None:
    got = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    if got is None or got.group(3) == "*":
        return None
    return int(got.group(3))


def _read_exactly(
    resp: http.client.HTTPResponse,
    out: memoryview,
    count: int,
    url: str,
    progress: Progress | None = None,
    version: str | None = None,
) -> None:
    """The next ``count`` bytes of the body into out[:count], ``progress`` told after each
    step: a body cut short is retried."""
    step = _STREAM_STEP if progress is not None else count
    done = 0
    while done < count:
        n = resp.readinto(out[done : min(count, done + step)])
        if not n:
            raise _Retry(
                ConnectionError(f"GET {url}: the reply ended after {done} of {count} bytes")
            )
        done += n
        if progress is not None and done < count:  # the whole: told by the return
            progress(done, version)


def _skip(resp: http.client.HTTPResponse, count: int, url: str) -> None:
    while count > 0:
        n = len(resp.read(min(count, 1 << 20)))
        if not n:
            raise _Retry(ConnectionError(f"GET {url}: the reply ended early"))
        count -= n


def _brief(body: str) -> str:
    """The gist of an error body (S3's XML Code and Message), on one line."""
    code = re.search(r"<Code>([^<]*)</Code>", body)
    message = re.search(r"<Message>([^<]*)</Message>", body)
    if code or message:
        return ": ".join(x.group(1) for x in (code, message) if x)
    return " ".join(body.split())[:200]
