"""Native reads from object stores (S3 and S3-compatible, GCS, HTTP(S)): the chunk and shard
bytes the C++ core asks for are fetched by ranged GETs on its I/O threads (``http``), signed
for S3 (``s3``), under the URL of the array (``location``)."""

from __future__ import annotations

from .http import HttpClient, RetryPolicy
from .location import RemoteFetcher, RemoteUnsupported, remote_fetcher

__all__ = ["HttpClient", "RemoteFetcher", "RemoteUnsupported", "RetryPolicy", "remote_fetcher"]
