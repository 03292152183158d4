"""Real servers for the GCS tests, on 127.0.0.1 only:

- ``GcsEmulator``: gcp-storage-emulator (a GCS JSON and XML API server, in memory) in a child
  process, stopped by its PID; ``upload_dir`` puts a local directory into a bucket.
- ``TokenServer``: an OAuth 2.0 token endpoint as Google's (``token_uri``) answers it: the
  JWT-bearer grant of a service account (the assertion's RS256 signature checked against the
  account's public key, its audience and scope too) and the refresh-token grant of an
  ``authorized_user``. Tokens it issued are ``valid(token)`` until ``expires_in`` passes.
  ``service_account_info()`` makes a key file's content (a fresh RSA key) that points at it.

Free of pytest (tests/remote_fixtures.py holds the fixtures).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from .servers import (
    LOCALHOST,
    ServerUnavailable,
    _register,
    _unregister,
    free_port_pair,
    terminate,
)

__all__ = ["GcsEmulator", "TokenServer"]

READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


class GcsEmulator:
    """gcp-storage-emulator on 127.0.0.1 (``python -m gcp_storage_emulator start --in-memory``);
    ``endpoint``, ``pid``; ``create_bucket``, ``upload_dir``. Raises ServerUnavailable without
    the package (pip install gcp-storage-emulator)."""

    def __init__(self, startup_timeout: float = 30.0) -> None:
        import importlib.util

        if importlib.util.find_spec("gcp_storage_emulator") is None:
            raise ServerUnavailable("gcp-storage-emulator is not installed")
        self.port = free_port_pair(offset=0)
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", LOCALHOST,
             "--port", str(self.port), "--in-memory", "--quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
        )  # fmt: skip
        self._stopped = False
        _register(self)
        deadline = time.monotonic() + startup_timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"gcp-storage-emulator exited at start-up: {err[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.endpoint + "/", timeout=2) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gcp-storage-emulator did not answer in {startup_timeout} s")
            time.sleep(0.1)

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def filesystem(self) -> Any:
        """A gcsfs file system of this emulator, anonymous (a new instance: not fsspec's cache)."""
        import gcsfs

        return gcsfs.GCSFileSystem(
            endpoint_url=self.endpoint, token="anon", skip_instance_cache=True
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().mkdir(name)

    def upload_dir(self, local: str | os.PathLike[str], bucket: str, prefix: str) -> None:
        """Every file under ``local`` to ``bucket/prefix/<relative path>`` (XML API PUTs:
        gcsfs's multipart uploads lose a byte of some objects on this emulator)."""
        root = Path(local)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = f"{prefix}/{path.relative_to(root).as_posix()}"
            data = path.read_bytes()
            request = urllib.request.Request(
                f"{self.endpoint}/{bucket}/{urllib.parse.quote(name)}",
                data=data,
                method="PUT",
                headers={"Content-Type": "application/octet-stream"},
            )
            with urllib.request.urlopen(request, timeout=30) as reply:
                reply.read()
            with urllib.request.urlopen(request.full_url, timeout=30) as reply:
                if reply.read() != data:
                    raise RuntimeError(f"the emulator stored {name} wrongly")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL after ``timeout`` s."""
        if self._stopped:
            return
        self._stopped = True
        proc, self.proc = self.proc, None
        try:
            if proc is not None:
                terminate(proc, timeout)
                if proc.stderr is not None:
                    proc.stderr.close()
        finally:
            _unregister(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        status, body = self.server.owner._grant({k: v[0] for k, v in form.items()})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class TokenServer:
    """An OAuth 2.0 token endpoint on 127.0.0.1 (``url``). ``expires_in``: the lifetime of the
    tokens it issues (seconds); ``refuse``: answer every grant with 400 invalid_grant.
    ``grants`` lists the grants it answered (their form fields, the JWT claims of a
    jwt-bearer grant); ``issued`` the tokens."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "reader@zarrcrop-test.iam.gserviceaccount.com"
        self.refresh_token = "zc-refresh-token"
        self.client_id, self.client_secret = "zc-client", "zc-client-secret"
        self.expires_in = 3600
        self.refuse = False
        self.grants: list[dict[str, Any]] = []
        self.issued: dict[str, float] = {}  # token -> expiry (time.time())
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._httpd = ThreadingHTTPServer((LOCALHOST, 0), _TokenHandler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._stopped = False
        _register(self)

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self._httpd.server_address[1]}/token"

    def service_account_info(self) -> dict[str, str]:
        """A service account key file's content whose ``token_uri`` is this server."""
        from cryptography.hazmat.primitives import serialization

        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": "zarrcrop-test",
            "private_key_id": "zc-key-1",
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "1",
            "token_uri": self.url,
        }

    def authorized_user_info(self) -> dict[str, str]:
        """An ``authorized_user`` file's content (as gcloud writes ADC) using this server."""
        return {
            "type": "authorized_user",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "token_uri": self.url,
        }

    def valid(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries a token issued here, not expired."""
        if authorization is None or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self.issued.get(authorization.removeprefix("Bearer "))
        return expiry is not None and time.time() < expiry

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        record: dict[str, Any] = dict(form)
        try:
            if self.refuse:
                raise ValueError("refused by the test")
            kind = form.get("grant_type")
            if kind == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                record["claims"] = self._check_assertion(form["assertion"])
            elif kind == "refresh_token":
                given = (
                    form.get("refresh_token"),
                    form.get("client_id"),
                    form.get("client_secret"),
                )
                if given != (self.refresh_token, self.client_id, self.client_secret):
                    raise ValueError("wrong refresh token or client")
            else:
                raise ValueError(f"grant_type {kind!r}")
        except (ValueError, KeyError) as exc:
            with self._lock:
                self.grants.append({**record, "error": str(exc)})
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        token = f"zc-token-{next(self._numbers)}"
        with self._lock:
            self.grants.append(record)
            self.issued[token] = time.time() + self.expires_in
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def _check_assertion(self, assertion: str) -> dict[str, Any]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        head, payload, signature = assertion.split(".")
        header = json.loads(_b64url_decode(head))
        if header.get("alg") != "RS256":
            raise ValueError(f"alg {header.get('alg')!r}")
        try:
            self.key.public_key().verify(
                _b64url_decode(signature),
                f"{head}.{payload}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature as exc:
            raise ValueError("bad signature") from exc
        claims: dict[str, Any] = json.loads(_b64url_decode(payload))
        # google-auth addresses its assertions to Google's token URI whatever ``token_uri`` says.
        audiences = (self.url, "https://oauth2.googleapis.com/token")
        if claims.get("iss") != self.client_email or claims.get("aud") not in audiences:
            raise ValueError(f"issuer or audience: {claims.get('iss')}, {claims.get('aud')}")
        if "devstorage" not in str(claims.get("scope", "")):
            raise ValueError(f"scope {claims.get('scope')!r}")
        if float(claims.get("exp", 0)) < time.time():
            raise ValueError("expired assertion")
        return claims

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        _unregister(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
