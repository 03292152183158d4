"""From a zarr-python array in a remote store to what the native reader needs: the URL its
chunk keys are relative to, and the function that fetches byte ranges of them.

Stores read natively: ``FsspecStore`` (what zarr-python makes of ``s3://``, ``gs://``,
``http(s)://`` URLs; s3fs, gcsfs or fsspec's HTTP filesystem) and ``ObjectStore`` over obstore's
``S3Store``, ``GCSStore`` and ``HTTPStore``. S3 and S3-compatible stores are signed with the
same credentials the store uses; GCS with gcsfs's credentials, or for obstore's ``GCSStore``
with the credentials its config names (``gcs.py`` says how they are found); other stores are
read through zarr-python (``fallback_reason`` says why).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .gcs import GcsfsAuthorizer, gcs_authorizer, gcs_endpoint, gcs_object_url
from .http import FetchResult, HttpClient, Progress, RetryPolicy
from .s3 import s3_location

__all__ = ["RemoteFetcher", "RemoteUnsupported", "remote_fetcher"]


class RemoteUnsupported(Exception):
    """The store is remote but cannot be read natively; the message says why."""


@dataclass
class RemoteFetcher:
    """``fetch(key, offset, length, from_end, out[, progress])`` for ``_core.CropReader``: byte
    ranges of the objects ``base_url/key``, told to ``progress`` as they stream in."""

    base_url: str  # no trailing "/", percent-encoded
    client: HttpClient
    #: The core then passes ``progress``: it decodes blocks while the rest is on the way.
    streams = True

    def url(self, key: str) -> str:
        return f"{self.base_url}/{urllib.parse.quote(key, safe='/~')}"

    def __call__(
        self,
        key: str,
        offset: int,
        length: int,
        from_end: bool,
        out: memoryview,
        progress: Progress | None = None,
    ) -> FetchResult:
        return self.client.fetch(self.url(key), offset, length, from_end, out, progress)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _headers_signer(headers: Mapping[str, str]) -> Any:
    fixed = {str(k): str(v) for k, v in headers.items()}

    def sign(method: str, url: str, out: dict[str, str]) -> None:
        out.update(fixed)

    return sign


def _s3(url: str, options: Mapping[str, Any]) -> RemoteFetcher:
    location, signer = s3_location(url, options)
    return RemoteFetcher(location.url().rstrip("/"), HttpClient(RetryPolicy(), signer))


def _gcs(
    bucket_and_path: str, options: Mapping[str, Any], gcsfs_credentials: Any = None
) -> RemoteFetcher:
    base = gcs_object_url(gcs_endpoint(options), bucket_and_path)
    if gcsfs_credentials is not None:  # gcsfs's own: the same token as zarr-python's reads
        return RemoteFetcher(base, HttpClient(RetryPolicy(), GcsfsAuthorizer(gcsfs_credentials)))
    try:
        sign = gcs_authorizer(options.get("token"), anon=bool(options.get("anon", False)))
    except NotImplementedError as exc:
        raise RemoteUnsupported(str(exc)) from exc
    return RemoteFetcher(base, HttpClient(RetryPolicy(), sign))


def _http(url: str, options: Mapping[str, Any]) -> RemoteFetcher:
    headers = dict(options.get("headers") or {})
    headers.update((options.get("client_kwargs") or {}).get("headers") or {})
    sign = _headers_signer(headers) if headers else None
    return RemoteFetcher(url.rstrip("/"), HttpClient(RetryPolicy(), sign))


def _from_fsspec(store: Any, path: str) -> RemoteFetcher:
    fs = store.fs
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    options = dict(getattr(fs, "storage_options", {}) or {})
    root = _join(str(store.path), path)
    if {"s3", "s3a"} & set(protocols):
        return _s3("s3://" + root, options)
    if {"gs", "gcs"} & set(protocols):
        return _gcs(root, options, getattr(fs, "credentials", None))
    if {"http", "https"} & set(protocols):
        url = root if "://" in root else f"{protocols[0]}://{root}"
        if "://" in str(store.path):
            url = str(store.path).rstrip("/") + ("/" + path.strip("/") if path.strip("/") else "")
        return _http(url, options)
    raise RemoteUnsupported(f"fsspec protocol {protocols[0]!r} is not read natively")


def _from_obstore(store: Any, path: str) -> RemoteFetcher:
    inner = store.store
    kind = type(inner).__name__
    prefix = str(getattr(inner, "prefix", None) or "")
    if kind == "S3Store":
        config = dict(getattr(inner, "config", {}) or {})
        options: dict[str, Any] = {}
        for ours, theirs in (
            ("key", ("access_key_id", "aws_access_key_id")),
            ("secret", ("secret_access_key", "aws_secret_access_key")),
            ("token", ("session_token", "aws_session_token", "token")),
            ("region", ("region", "aws_region")),
            ("endpoint_url", ("endpoint", "aws_endpoint", "endpoint_url")),
        ):
            for name in theirs:
                value = config.get(name) or config.get(name.upper())
                if value:
                    options[ours] = value
                    break
        if str(config.get("skip_signature", config.get("SKIP_SIGNATURE", ""))).lower() == "true":
            options["anon"] = True
        bucket = config.get("bucket") or config.get("BUCKET")
        if not bucket:
            raise RemoteUnsupported("obstore S3Store without a bucket in its config")
        return _s3("s3://" + _join(str(bucket), prefix, path), options)
    if kind == "GCSStore":
        config = dict(getattr(inner, "config", {}) or {})
        bucket, options = _gcs_store_options(inner, config)
        return _gcs(_join(bucket, prefix, path), options)
    if kind == "HTTPStore":
        url = str(getattr(inner, "url", "")).rstrip("/")
        return _http("/".join(p for p in (url, prefix.strip("/"), path.strip("/")) if p), {})
    raise RemoteUnsupported(f"obstore {kind} is not read natively")


def _gcs_store_options(store: Any, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(bucket, gcsfs-style options) of an obstore GCSStore's config."""

    def get(*names: str) -> Any:
        for name in names:
            for key in (name, name.upper(), "google_" + name, ("google_" + name).upper()):
                if config.get(key):
                    return config[key]
        return None

    bucket = get("bucket", "bucket_name")
    if not bucket:
        raise RemoteUnsupported("obstore GCSStore without a bucket in its config")
    if getattr(store, "credential_provider", None) is not None:
        raise RemoteUnsupported("obstore GCSStore with a credential_provider callback")
    options: dict[str, Any] = {}
    if get("base_url"):
        options["endpoint_url"] = get("base_url")
    if str(get("skip_signature") or "").lower() == "true":
        options["token"] = "anon"
    elif get("bearer_token"):
        options["token"] = get("bearer_token")
    elif get("service_account_key"):
        options["token"] = json.loads(get("service_account_key"))
    elif get("service_account", "service_account_path", "application_credentials"):
        options["token"] = str(
            get("service_account", "service_account_path", "application_credentials")
        )
    return str(bucket), options


def remote_fetcher(node: Any) -> RemoteFetcher:
    """The fetcher for zarr-python array or group ``node`` in a remote store, or
    RemoteUnsupported saying why not."""
    store = node.store
    path = str(node.store_path.path)
    from zarr.storage import FsspecStore

    if isinstance(store, FsspecStore):
        return _from_fsspec(store, path)
    try:
        from zarr.storage import ObjectStore
    except ImportError:  # pragma: no cover - zarr without obstore support
        ObjectStore = None  # type: ignore[assignment,misc]
    if ObjectStore is not None and isinstance(store, ObjectStore):
        return _from_obstore(store, path)
    raise RemoteUnsupported(f"store {type(store).__name__} is not a remote store zarrcrop reads")
