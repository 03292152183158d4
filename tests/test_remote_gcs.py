"""Native reads from Google Cloud Storage, against real servers on 127.0.0.1: gcp-storage-emulator
(the GCS API; ``gs://`` URLs through gcsfs, obstore's GCSStore) and, for credentials, a Range
HTTP server that answers only requests carrying a token issued by a real OAuth token endpoint
(tests/helpers/gcs_servers.TokenServer: service account JWTs checked against the key, refresh
tokens). Results must equal zarr-python's; bad credentials raise errors naming their source.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import REMOTE_SPECS, create_array, expected_crops, make_data
from helpers.gcs_servers import GcsEmulator, TokenServer
from helpers.loader_workers import expected_total, run_loader_workers
from helpers.servers import RangeHTTPServer, ServerUnavailable, pid_alive

pytest.importorskip("gcsfs")
pytest.importorskip("google.auth")
pytest.importorskip("cryptography")

from zarrcrop.remote.gcs import (
    GcsCredentialsError,
    gcs_authorizer,
    gcs_endpoint,
)
from zarrcrop.remote.location import _from_obstore, _gcs, _gcs_store_options

BUCKET = "zc-gcs"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """v2 Blosc (with a missing chunk) and v3 sharded with the index at the end."""
    root = tmp_path_factory.mktemp("gcs-data")
    out = {}
    for i, name in enumerate(("v2small", "v3sharded")):
        spec = REMOTE_SPECS[name]
        group = root / name
        data = make_data(spec.shape, spec.dtype, seed=20 + i, mode="runs")
        zarr.open_group(str(group), mode="w", zarr_format=spec.zarr_format)
        create_array(group / "a", spec, data, missing=[(1, 0, 0)] if name == "v2small" else ())
        out[name] = (group, np.asarray(zarr.open_array(str(group / "a"), mode="r")[:]))
    return out


@pytest.fixture(scope="module")
def emulator(datasets):
    try:
        server = GcsEmulator()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    pid = server.pid
    try:
        server.create_bucket(BUCKET)
        for name, (group, _) in datasets.items():
            server.upload_dir(group, BUCKET, f"{name}.zarr")
        yield server
    finally:
        server.stop()
    assert pid is None or not pid_alive(pid), f"the GCS emulator (PID {pid}) still runs"


@pytest.fixture
def token_server():
    server = TokenServer()
    try:
        yield server
    finally:
        server.stop()


def _check_reads(a, data, seed=0):
    assert a.native, a.fallback_reason
    rng = np.random.default_rng(seed)
    size = (1, 100, 90)
    starts = np.array(
        [[int(rng.integers(0, data.shape[d] - size[d] + 1)) for d in range(3)] for _ in range(5)]
    )
    np.testing.assert_array_equal(a.read_crops(starts, size), expected_crops(data, starts, size, 0))
    np.testing.assert_array_equal(a[1, 10:190:3, ::-2], data[1, 10:190:3, ::-2])
    np.testing.assert_array_equal(a[:], data)


@pytest.mark.parametrize("name", ["v2small", "v3sharded"])
def test_gs_urls_read_natively_equal_zarr_python(emulator, datasets, name):
    _, data = datasets[name]
    url = f"gs://{BUCKET}/{name}.zarr"
    opts = {"endpoint_url": emulator.endpoint, "token": "anon"}
    a = zarrcrop.open_group(url, storage_options=opts, strict=True)["a"]
    _check_reads(a, data)  # against zarr-python's read of the local copy
    if name == "v2small":
        # zarr-python through gcsfs, the same server, the same answer. (Not for shards: the
        # emulator answers a suffix range with the whole object, which our client detects
        # and gcsfs takes for the index.)
        ref = zarr.open_group(url, mode="r", storage_options=opts)["a"]
        np.testing.assert_array_equal(a[0, 5:150, 7:160], ref[0, 5:150, 7:160])


def test_the_emulator_host_variable_is_the_endpoint(emulator, datasets, monkeypatch):
    # STORAGE_EMULATOR_HOST, as gcsfs and Google's clients read it (host:port, no scheme).
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint.removeprefix("http://"))
    assert gcs_endpoint({}) == emulator.endpoint
    assert gcs_endpoint({"endpoint_url": "https://example.test/"}) == "https://example.test"
    _, data = datasets["v2small"]
    a = zarrcrop.open(
        f"gs://{BUCKET}/v2small.zarr/a", storage_options={"token": "anon"}, strict=True
    )
    np.testing.assert_array_equal(a[2, :64], data[2, :64])


def test_obstore_gcsstore_reads_natively(emulator, datasets):
    from obstore.store import GCSStore
    from zarr.storage import ObjectStore

    group, _ = datasets["v2small"]
    inner = GCSStore(BUCKET, prefix="v2small.zarr", base_url=emulator.endpoint, skip_signature=True)
    bucket, options = _gcs_store_options(inner, dict(inner.config))
    assert (bucket, options) == (BUCKET, {"endpoint_url": emulator.endpoint, "token": "anon"})
    # The native fetcher made from the store reads the emulator's objects. (zarr-python over
    # obstore cannot open this array: obstore escapes every character of the object's path,
    # which the emulator answers with 501.)
    fetcher = _from_obstore(ObjectStore(inner, read_only=True), "a")
    assert _fetch(fetcher, ".zarray") == (group / "a" / ".zarray").read_bytes()[:64]
    chunk = (group / "a" / "0.0.0").read_bytes()
    assert _fetch(fetcher, "0.0.0", len(chunk)) == chunk


def test_obstore_gcsstore_credentials_map_to_tokens(tmp_path, token_server):
    from obstore.store import GCSStore

    info = token_server.service_account_info()
    key = _key_file(tmp_path, info)
    cases = [
        ({"service_account": key}, key),
        ({"application_credentials": key}, key),
        ({"service_account_key": json.dumps(info)}, info),
        ({"bearer_token": "ya29.token"}, "ya29.token"),
    ]
    for config, token in cases:
        inner = GCSStore("b", **config)
        assert _gcs_store_options(inner, dict(inner.config)) == ("b", {"token": token})


# ----------------------------------------------------------------------------- credentials
def _auth_site(tmp_path: Path, datasets, token_server: TokenServer) -> RangeHTTPServer:
    """The datasets under bucket ``BUCKET`` on a Range HTTP server that answers only requests
    with a token ``token_server`` issued: path-style objects for zarrcrop and, copied under the
    JSON API's paths, media downloads for gcsfs (zarr-python's metadata reads)."""
    root = tmp_path / "site"
    for name, (group, _) in datasets.items():
        shutil.copytree(group, root / BUCKET / f"{name}.zarr")
        media = root / "download" / "storage" / "v1" / "b" / BUCKET / "o"
        shutil.copytree(group, media / f"{name}.zarr")
    server = RangeHTTPServer(root)
    server.authorize = lambda path, header: token_server.valid(header)
    return server


def _key_file(tmp_path: Path, info: dict[str, str], name: str = "key.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(info))
    return str(path)


def test_gs_url_with_a_service_account_key_reads_natively_with_gcsfs_token(
    tmp_path, datasets, token_server
):
    server = _auth_site(tmp_path, datasets, token_server)
    try:
        key = _key_file(tmp_path, token_server.service_account_info())
        opts = {"endpoint_url": server.endpoint, "token": key}
        _, data = datasets["v2small"]
        url = f"gs://{BUCKET}/v2small.zarr"
        a = zarrcrop.open_group(url, storage_options=opts, strict=True)["a"]
        _check_reads(a, data)
        # Every request carried an issued token; the chunk reads were zarrcrop's (path style).
        assert server.auth_log and all(token_server.valid(h) for _, h in server.auth_log)
        assert any(p.startswith(f"{BUCKET}/v2small.zarr/a/") for p, _ in server.auth_log)
        # The token came from a signed JWT grant of the key's account (one, shared with gcsfs).
        grants = [g for g in token_server.grants if "error" not in g]
        assert len(grants) == 1 and grants[0]["claims"]["iss"] == token_server.client_email
    finally:
        server.stop()


def _fetch(fetcher, key: str, length: int = 64) -> bytes:
    buf = bytearray(length)
    found, size, start, count, _etag = fetcher(key, 0, length, False, memoryview(buf))
    assert found and count == min(length, size) and start == 0
    return bytes(buf[:count])


def _local_bytes(datasets, key: str, length: int = 64) -> bytes:
    name, _, rest = key.partition(".zarr/")
    return (datasets[name][0] / rest).read_bytes()[:length]


@pytest.mark.parametrize("form", ["file", "dict", "credentials", "adc-env"])
def test_service_account_credentials_in_every_form(tmp_path, datasets, token_server, form,
                                                   monkeypatch):  # fmt: skip
    server = _auth_site(tmp_path, datasets, token_server)
    try:
        info = token_server.service_account_info()
        token: object
        if form == "file":
            token = _key_file(tmp_path, info)
        elif form == "dict":
            token = info
        elif form == "credentials":
            from google.oauth2 import service_account

            token = service_account.Credentials.from_service_account_info(
                info, scopes=["https://www.googleapis.com/auth/devstorage.read_only"]
            )
        else:  # application default credentials: GOOGLE_APPLICATION_CREDENTIALS, token=None
            monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", _key_file(tmp_path, info))
            token = None
        fetcher = _gcs(BUCKET, {"endpoint_url": server.endpoint, "token": token})
        key = "v2small.zarr/a/.zarray"
        for _ in range(3):
            assert _fetch(fetcher, key) == _local_bytes(datasets, key)
        assert len(token_server.grants) == 1  # one token, reused while it is valid
        assert token_server.grants[0]["claims"]["scope"].endswith("devstorage.read_only")
    finally:
        server.stop()


def test_user_credentials_refresh_their_token(tmp_path, datasets, token_server):
    # An authorized_user key (gcloud's application default credentials) is read into
    # google-auth's user credentials, refreshed with its refresh token. google-auth always sends
    # those to Google's token URI, so the refresh here is of the same credentials object made
    # with this server's URI.
    import google.oauth2.credentials
    from zarrcrop.remote.gcs import _from_info

    info = token_server.authorized_user_info()
    parsed = _from_info(info, "adc.json")
    assert isinstance(parsed, google.oauth2.credentials.Credentials)
    assert parsed.refresh_token == token_server.refresh_token
    server = _auth_site(tmp_path, datasets, token_server)
    try:
        creds = google.oauth2.credentials.Credentials(
            None, refresh_token=info["refresh_token"], token_uri=token_server.url,
            client_id=info["client_id"], client_secret=info["client_secret"],
        )  # fmt: skip
        fetcher = _gcs(BUCKET, {"endpoint_url": server.endpoint, "token": creds})
        key = "v2small.zarr/.zgroup"
        assert _fetch(fetcher, key) == _local_bytes(datasets, key)
        assert [g["grant_type"] for g in token_server.grants] == ["refresh_token"]
    finally:
        server.stop()


def test_a_token_about_to_expire_is_refreshed_before_the_request(tmp_path, datasets,
                                                                 token_server):  # fmt: skip
    # Tokens that expire within the refresh margin are renewed before each use, never sent
    # stale (the server would refuse them once expired).
    server = _auth_site(tmp_path, datasets, token_server)
    try:
        token_server.expires_in = 30
        fetcher = _gcs(BUCKET, {"endpoint_url": server.endpoint,
                                "token": token_server.service_account_info()})  # fmt: skip
        for _ in range(3):
            _fetch(fetcher, "v2small.zarr/.zgroup")
        assert len(token_server.grants) == 3
        sent = [h for _, h in server.auth_log]
        assert len(set(sent)) == 3 and all(token_server.valid(h) for h in sent)
    finally:
        server.stop()


def test_refused_credentials_are_errors_naming_their_source(tmp_path, datasets, token_server):
    server = _auth_site(tmp_path, datasets, token_server)
    try:
        key = _key_file(tmp_path, token_server.service_account_info())
        token_server.refuse = True
        fetcher = _gcs(BUCKET, {"endpoint_url": server.endpoint, "token": key})
        with pytest.raises(PermissionError, match=r"key\.json.*refreshed"):
            _fetch(fetcher, "v2small.zarr/.zgroup")
        # A token the server does not accept: 401, an error naming the URL.
        anon = _gcs(BUCKET, {"endpoint_url": server.endpoint, "token": "not-a-token"})
        with pytest.raises(PermissionError, match=r"v2small\.zarr/\.zgroup.*401"):
            _fetch(anon, "v2small.zarr/.zgroup")
    finally:
        server.stop()


def test_unusable_credentials_name_the_file_or_fall_back(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GcsCredentialsError, match=r"bad\.json"):
        gcs_authorizer(str(bad))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"type": "external_account_x"}))
    with pytest.raises(GcsCredentialsError, match=r"other\.json.*external_account_x"):
        gcs_authorizer(str(other))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(GcsCredentialsError, match="google_default"):
        gcs_authorizer("google_default")
    assert gcs_authorizer("anon") is None and gcs_authorizer(None, anon=True) is None
    # gcsfs's own token cache is not ours to read: the store goes through zarr-python.
    with pytest.raises(NotImplementedError, match="cache"):
        gcs_authorizer("cache")
    # No credentials anywhere and token=None: anonymous, as gcsfs does.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    assert gcs_authorizer(None) is None


def test_dataloader_workers_fork_and_spawn_with_service_account_credentials(
    tmp_path, datasets, token_server
):
    # Workers started by fork and by spawn read natively after the parent has, each
    # authorized (the server refuses requests without a token the token server issued).
    pytest.importorskip("torch")
    server = _auth_site(tmp_path, datasets, token_server)
    try:
        key = _key_file(tmp_path, token_server.service_account_info())
        opts = {"endpoint_url": server.endpoint, "token": key}
        out = run_loader_workers(f"gs://{BUCKET}/v2small.zarr", opts)
        total = str(expected_total(datasets["v2small"][1]))
        assert out.split() == ["fork", total, "spawn", total], out
        assert all(token_server.valid(h) for _, h in server.auth_log)
    finally:
        server.stop()
