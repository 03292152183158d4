"""S3 (and S3-compatible stores: MinIO, SeaweedFS, R2, Ceph, GCS's XML API): where objects
are, and how a request is signed (AWS Signature Version 4).

Credentials and settings are looked up as AWS's tools do, in order: ``storage_options`` (s3fs's
names: ``key``, ``secret``, ``token``, ``anon``, ``endpoint_url``, ``client_kwargs``; or the AWS
ones: ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``, ``region``,
``region_name``), then botocore's credential chain when botocore is installed (it comes with
s3fs: environment, shared files, SSO, instance roles, ...), else the ``AWS_*`` environment
variables and the shared ``~/.aws/credentials`` / ``~/.aws/config`` files (``AWS_PROFILE``).
With no credentials at all, requests are sent unsigned (public buckets).
"""

from __future__ import annotations

import configparser
import datetime
import hashlib
import hmac
import os
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CredentialProvider", "Credentials", "S3Location", "SigV4Signer", "s3_location"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


@dataclass(frozen=True)
class S3Location:
    """The objects of ``bucket`` under ``prefix`` at ``endpoint`` (path-style URLs for
    custom endpoints, virtual-hosted style for AWS's own)."""

    bucket: str
    prefix: str
    endpoint: str  # scheme://host[:port], no trailing slash
    region: str
    path_style: bool

    def url(self, key: str = "") -> str:
        """The URL of ``prefix/key`` (percent-encoded as S3 canonicalises it)."""
        path = "/".join(p for p in (self.prefix, key) if p)
        quoted = urllib.parse.quote(path, safe="/~")
        if self.path_style:
            return f"{self.endpoint}/{self.bucket}/{quoted}"
        scheme, host = self.endpoint.split("://", 1)
        return f"{scheme}://{self.bucket}.{host}/{quoted}"


class SigV4Signer:
    """Signs requests with AWS Signature Version 4 (header-based). Credentials come from
    ``provider()`` on each request, so that expiring ones (sessions, roles) refresh."""

    def __init__(self, region: str, provider: Any, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self.provider = provider
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def __call__(self, method: str, url: str, headers: dict[str, str]) -> None:
        creds: Credentials | None = self.provider()
        if creds is None:
            return  # anonymous
        now = datetime.datetime.now(datetime.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        parts = urllib.parse.urlsplit(url)
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = _EMPTY_SHA256
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
        signed["host"] = parts.netloc
        names = sorted(n for n in signed if n == "host" or n.startswith("x-amz-"))
        canonical_headers = "".join(f"{n}:{signed[n]}\n" for n in names)
        signed_headers = ";".join(names)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        )
        canonical = "\n".join(
            [method, parts.path or "/", query, canonical_headers, signed_headers, _EMPTY_SHA256]
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signature = hmac.new(self._key(creds.secret_key, day), to_sign.encode(), "sha256")
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature.hexdigest()}"
        )

    def _key(self, secret: str, day: str) -> bytes:
        # The derived key changes once a day: computed once per (secret, day).
        with self._lock:
            key = self._keys.get((secret, day))
            if key is None:
                key = ("AWS4" + secret).encode()
                for part in (day, self.region, self.service, "aws4_request"):
                    key = hmac.new(key, part.encode(), "sha256").digest()
                self._keys = {(secret, day): key}
            return key


class CredentialProvider:
    """Credentials for the signer: fixed ones, botocore's (refreshed as they expire), or
    none (anonymous)."""

    def __init__(self, fixed: Credentials | None, botocore_creds: Any = None) -> None:
        self.fixed = fixed
        self.botocore_creds = botocore_creds

    def __call__(self) -> Credentials | None:
        if self.fixed is not None:
            return self.fixed
        if self.botocore_creds is not None:
            frozen = self.botocore_creds.get_frozen_credentials()
            return Credentials(frozen.access_key, frozen.secret_key, frozen.token)
        return None

    def __getstate__(self) -> dict[str, Any]:
        # botocore's refreshable credentials hold locks: a pickled provider keeps the
        # credentials as they are now (a worker process gets its own copy).
        return {"fixed": self(), "botocore_creds": None}


def _profile_settings(profile: str) -> tuple[dict[str, str], dict[str, str]]:
    """(credentials, config) entries of an AWS profile from the shared files."""
    home = Path.home() / ".aws"
    creds_file = os.environ.get("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    config_file = os.environ.get("AWS_CONFIG_FILE", str(home / "config"))
    creds: dict[str, str] = {}
    config: dict[str, str] = {}
    parser = configparser.RawConfigParser()
    if parser.read(creds_file) and parser.has_section(profile):
        creds = dict(parser.items(profile))
    parser = configparser.RawConfigParser()
    section = profile if profile == "default" else f"profile {profile}"
    if parser.read(config_file) and parser.has_section(section):
        config = dict(parser.items(section))
    return creds, config


def _botocore_credentials(profile: str | None) -> Any:
    try:
        import botocore.session
    except ImportError:
        return None
    session = botocore.session.Session(profile=profile)
    return session.get_credentials()


def s3_location(url: str, options: Mapping[str, Any]) -> tuple[S3Location, SigV4Signer]:
    """Where ``s3://bucket/prefix`` is and how to sign requests to it, from ``options``
    (s3fs-style storage_options) and the environment."""
    parts = urllib.parse.urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket:
        raise ValueError(f"{url}: no bucket")
    client_kwargs = dict(options.get("client_kwargs") or {})
    profile = options.get("profile") or os.environ.get("AWS_PROFILE") or "default"
    file_creds, file_config = _profile_settings(str(profile))
    region = (
        options.get("region")
        or options.get("region_name")
        or client_kwargs.get("region_name")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or file_config.get("region")
        or "us-east-1"
    )
    endpoint = (
        options.get("endpoint_url")
        or client_kwargs.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or file_config.get("endpoint_url")
    )
    if endpoint:
        endpoint = str(endpoint).rstrip("/")
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        path_style = True
    else:
        endpoint = f"https://s3.{region}.amazonaws.com"
        # Virtual-hosted style, unless the bucket name cannot be a host name.
        path_style = "." in bucket or bucket.lower() != bucket
    location = S3Location(bucket, prefix, endpoint, str(region), path_style)
    fixed: Credentials | None = None
    key = options.get("key") or options.get("aws_access_key_id")
    secret = options.get("secret") or options.get("aws_secret_access_key")
    token = options.get("token") or options.get("aws_session_token")
    botocore_creds = None
    if options.get("anon"):
        pass
    elif key and secret:
        fixed = Credentials(str(key), str(secret), str(token) if token else None)
    else:
        botocore_creds = _botocore_credentials(options.get("profile"))
        if botocore_creds is None:
            env_key = os.environ.get("AWS_ACCESS_KEY_ID")
            env_secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
            if env_key and env_secret:
                fixed = Credentials(env_key, env_secret, os.environ.get("AWS_SESSION_TOKEN"))
            elif file_creds.get("aws_access_key_id") and file_creds.get("aws_secret_access_key"):
                fixed = Credentials(
                    file_creds["aws_access_key_id"],
                    file_creds["aws_secret_access_key"],
                    file_creds.get("aws_session_token"),
                )
    provider = CredentialProvider(fixed, botocore_creds)
    return location, SigV4Signer(str(region), provider)
