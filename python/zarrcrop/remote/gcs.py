"""Google Cloud Storage: where a bucket's objects are read from and how requests are authorized.

Objects are read with the XML API's path-style URLs (``{endpoint}/{bucket}/{object}``, a
``Range`` header per request). The endpoint is ``endpoint_url`` from the storage options, else
``STORAGE_EMULATOR_HOST`` (as gcsfs and Google's clients read it), else
``https://storage.googleapis.com``.

Credentials are found as gcsfs finds them, from the same ``token`` option, through google-auth
(the library gcsfs and Google's clients use to sign and refresh tokens):

- a store opened by gcsfs (``gs://`` URLs): gcsfs's own credentials object, so both readers
  send the same token and refresh it the same way;
- ``token="anon"``: anonymous; ``token=None`` (the default): application default credentials
  (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's file, the metadata server), else anonymous;
  ``"google_default"``: application default credentials or an error; ``"cloud"``: the metadata
  server; a path to a JSON key file (a service account, or an ``authorized_user`` file); a
  dict of such a file's content; a ``google.auth`` credentials object; any other string: an
  OAuth access token used as is.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "GcsAuthorizer",
    "GcsCredentialsError",
    "GcsfsAuthorizer",
    "gcs_authorizer",
    "gcs_endpoint",
    "gcs_object_url",
]

#: Read-only access is all a reader asks for.
READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
#: Refresh a token this many seconds before it expires (a request in flight must not carry
#: a token that expires on the way; gcsfs uses the same margin).
REFRESH_MARGIN_S = 100.0
_GCSFS_ONLY = ("cache", "browser")


class GcsCredentialsError(ValueError):
    """No usable GCS credentials in the given ``token``; the message says which and why."""


def gcs_endpoint(options: Mapping[str, Any]) -> str:
    """The scheme and host GCS objects are read from (no trailing ``/``)."""
    endpoint = options.get("endpoint_url")
    if not endpoint:
        emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
        endpoint = emulator if emulator not in ("", "default") else DEFAULT_ENDPOINT
    endpoint = str(endpoint).rstrip("/")
    if "://" not in endpoint:
        endpoint = "http://" + endpoint  # an emulator's host:port, as gcsfs reads it
    return endpoint


def gcs_object_url(endpoint: str, bucket_and_path: str) -> str:
    """The path-style URL of ``bucket/path`` at ``endpoint``."""
    return f"{endpoint}/{urllib.parse.quote(bucket_and_path.strip('/'), safe='/~')}"


class GcsAuthorizer:
    """Adds ``Authorization: Bearer ...`` to a request's headers (``sign(method, url, headers)``
    as the HTTP client calls it from its I/O threads), refreshing the token under a lock when
    it expires within ``REFRESH_MARGIN_S``."""

    def __init__(self, credentials: Any, source: str) -> None:
        self.credentials = credentials
        self.source = source  # what the credentials came from, for error messages
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __call__(self, method: str, url: str, headers: dict[str, str]) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's lock may be held forever
            self._lock, self._pid = threading.Lock(), os.getpid()
        if _needs_refresh(self.credentials):
            with self._lock:
                if _needs_refresh(self.credentials):
                    self._refresh()
        self.credentials.apply(headers)

    def _refresh(self) -> None:
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        try:
            self.credentials.refresh(Request())
        except google.auth.exceptions.GoogleAuthError as exc:
            raise PermissionError(
                f"GCS credentials from {self.source}: the token could not be refreshed: {exc}"
            ) from exc

    def __getstate__(self) -> dict[str, Any]:
        return {"credentials": self.credentials, "source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._pid = threading.Lock(), os.getpid()


class GcsfsAuthorizer:
    """Authorizes requests with a gcsfs file system's own credentials (its token, refreshed by
    gcsfs as it refreshes it for its own requests)."""

    def __init__(self, gcsfs_credentials: Any) -> None:
        self.gcsfs_credentials = gcsfs_credentials

    def __call__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.gcsfs_credentials.apply(headers)


def _needs_refresh(credentials: Any) -> bool:
    if not credentials.token:
        return True
    expiry = getattr(credentials, "expiry", None)
    if expiry is None:
        return False  # a token without an expiry (given as is) is used until it is refused
    now = datetime.datetime.now(datetime.UTC)
    left = expiry.replace(tzinfo=datetime.UTC) - now
    return bool(left.total_seconds() < REFRESH_MARGIN_S)


def _from_info(info: Mapping[str, Any], source: str) -> Any:
    kind = info.get("type")
    try:
        if kind == "service_account":
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                dict(info), scopes=[READ_SCOPE]
            )
        if kind == "authorized_user" or "refresh_token" in info:
            import google.oauth2.credentials

            return google.oauth2.credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
                dict(info), scopes=None
            )
    except (ValueError, KeyError) as exc:
        raise GcsCredentialsError(f"GCS credentials in {source}: {exc}") from exc
    raise GcsCredentialsError(
        f"GCS credentials in {source}: type {kind!r} is not a service_account or "
        "authorized_user key"
    )


def _from_file(path: str) -> Any:
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise GcsCredentialsError(f"GCS credentials file {path}: {exc}") from exc
    if not isinstance(info, dict):
        raise GcsCredentialsError(f"GCS credentials file {path}: not a JSON object")
    return _from_info(info, path)


def _application_default() -> Any:
    import google.auth

    credentials, _project = google.auth.default(scopes=[READ_SCOPE])
    return credentials


def gcs_authorizer(token: Any, anon: bool = False) -> GcsAuthorizer | None:
    """The authorizer for gcsfs-style ``token`` (see the module's docstring); None for
    anonymous requests. Raises GcsCredentialsError for credentials that cannot be used, and
    NotImplementedError for gcsfs's own token cache (``"cache"``, ``"browser"``)."""
    if anon or token == "anon":
        return None
    try:
        import google.auth
        import google.auth.credentials
        import google.auth.exceptions
    except ImportError as exc:
        if isinstance(token, str) and token not in ("google_default", "cloud", *_GCSFS_ONLY):
            if not os.path.exists(token):
                return _static_token(token)
        raise NotImplementedError(
            "GCS credentials other than an access token need google-auth (pip install "
            "google-auth, which gcsfs installs too)"
        ) from exc
    if token is None:
        try:
            return GcsAuthorizer(_application_default(), "application default credentials")
        except google.auth.exceptions.DefaultCredentialsError:
            return None  # as gcsfs does: no credentials found, anonymous
    if token == "google_default":
        try:
            return GcsAuthorizer(_application_default(), "application default credentials")
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise GcsCredentialsError(f"token='google_default': {exc}") from exc
    if token == "cloud":
        from google.auth import compute_engine

        return GcsAuthorizer(
            compute_engine.Credentials(),  # type: ignore[no-untyped-call]
            "the metadata server",
        )
    if isinstance(token, google.auth.credentials.Credentials):
        return GcsAuthorizer(token, f"the given {type(token).__name__}")
    if isinstance(token, Mapping):
        return GcsAuthorizer(_from_info(token, "the given token dict"), "the given token dict")
    if isinstance(token, (str, os.PathLike)):
        text = os.fspath(token)
        if text in _GCSFS_ONLY:
            raise NotImplementedError(f"token={text!r} is gcsfs's own token cache")
        if os.path.exists(text):
            return GcsAuthorizer(_from_file(text), text)
        return _static_token(text)
    raise GcsCredentialsError(f"GCS token of type {type(token).__name__} is not understood")


def _static_token(token: str) -> GcsAuthorizer:
    return GcsAuthorizer(_StaticToken(token), "the given access token")


class _StaticToken:
    """An OAuth access token given as is: never refreshed (google-auth's Credentials protocol,
    the parts GcsAuthorizer uses)."""

    expiry = None

    def __init__(self, token: str) -> None:
        self.token = token

    def apply(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = f"Bearer {self.token}"

    def refresh(self, request: Any) -> None:  # pragma: no cover - a token is always set
        raise PermissionError("a GCS access token given as is cannot be refreshed")
