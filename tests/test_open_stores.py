"""zarrcrop.open / open_group take what zarr-python takes as ``store``.

Paths, ``file://`` URLs and ``LocalStore`` objects read natively; other stores (MemoryStore,
fsspec URLs such as ``memory://``, ObjectStore) are read by zarr-python, with the reason shown;
directory names that are not UTF-8 read natively too.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarr.storage
import zarrcrop
from helpers import assert_same, make_data

SHAPE, CHUNKS = (6, 10, 12), (2, 4, 5)
COMPRESSOR = numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE)


def _fill(store, **kwargs):
    """Writes group {"gt", "lr/rgb"} (zarr v2, Blosc) with zarr-python; returns the zarr group."""
    zg = zarr.open_group(store=store, mode="w", zarr_format=2, **kwargs)
    for i, name in enumerate(("gt", "lr/rgb")):
        za = zg.create_array(
            name, shape=SHAPE, chunks=CHUNKS, dtype="int16", compressors=COMPRESSOR
        )
        za[...] = make_data(SHAPE, "int16", seed=i)
    za.attrs["units"] = "counts"
    return zg


@pytest.fixture
def local_group(tmp_path):
    path = tmp_path / "local.zarr"
    return path, _fill(str(path))


def _check_reads(ca, za, *, native):
    assert isinstance(ca, zarrcrop.CropArray)
    assert ca.native is native, ca.fallback_reason
    assert_same(ca[...], za[...])
    assert_same(ca[1, 2:9, ::-3], np.asarray(za[...])[1, 2:9, ::-3])
    batch = ca.read_crops(np.array([[0, 0, 0], [3, 5, 6]]), (3, 4, 5))
    assert_same(batch[1], za[3:6, 5:9, 6:11])


def _check_fallback(ca, za, keywords):
    _check_reads(ca, za, native=False)
    reason = ca.fallback_reason
    assert reason and "\n" not in reason
    assert any(k in reason for k in keywords), reason
    assert "local" in reason, reason


# --------------------------------------------------------------------------------------
# Local: file:// URLs, LocalStore, StorePath
# --------------------------------------------------------------------------------------


@pytest.mark.native
@pytest.mark.parametrize("dirname", ["plain.zarr", "with space.zarr"])
def test_file_url_reads_natively(tmp_path, dirname):
    path = tmp_path / dirname
    zg = _fill(str(path))
    url = f"file://{path}"  # as fsspec takes it (zarr-python): the path, not percent-encoded

    g = zarrcrop.open_group(url)
    assert isinstance(g, zarrcrop.CropGroup)
    assert sorted(g) == sorted(zarr.open_group(url, mode="r")) == ["gt", "lr"]
    _check_reads(g["gt"], zg["gt"], native=True)
    _check_reads(g["lr/rgb"], zg["lr/rgb"], native=True)
    assert g["gt"].name == str(path / "gt")
    _check_reads(zarrcrop.open(url, "lr/rgb", strict=True), zg["lr/rgb"], native=True)
    _check_reads(zarrcrop.open(f"{url}/gt"), zg["gt"], native=True)
    assert dict(zarrcrop.open(url, path="lr/rgb").attrs) == {"units": "counts"}


def test_missing_file_url_names_the_path(tmp_path):
    url = f"file://{tmp_path}/missing.zarr"
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/missing.zarr") as info:
        zarrcrop.open_group(url)
    assert "file:" not in str(info.value).split(" (")[0]  # the path itself, then the URL
    with pytest.raises(FileNotFoundError, match=r"missing\.zarr"):
        zarrcrop.open(url)


def test_missing_path_is_named_once(tmp_path):
    path = tmp_path / "missing.zarr"
    for store in (str(path), path):
        with pytest.raises(FileNotFoundError) as info:
            zarrcrop.open_group(store)
        assert str(info.value) == f"no zarr group at {path}"
        with pytest.raises(FileNotFoundError) as info:
            zarrcrop.open(store)
        assert str(info.value) == f"no zarr array or group at {path}"


@pytest.mark.native
@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
def test_local_store_object_reads_natively(local_group, read_only):
    path, zg = local_group
    store = zarr.storage.LocalStore(path, read_only=read_only)
    g = zarrcrop.open_group(store, strict=True)
    _check_reads(g["gt"], zg["gt"], native=True)
    _check_reads(g["lr"]["rgb"], zg["lr/rgb"], native=True)
    _check_reads(zarrcrop.open(store, "lr/rgb", strict=True), zg["lr/rgb"], native=True)


@pytest.mark.native
def test_store_path_over_local_store_reads_natively(local_group):
    path, zg = local_group
    store_path = zarr.storage.StorePath(zarr.storage.LocalStore(path, read_only=True))
    _check_reads(zarrcrop.open(store_path / "gt", strict=True), zg["gt"], native=True)
    _check_reads(zarrcrop.open_group(store_path / "lr")["rgb"], zg["lr/rgb"], native=True)


def test_missing_local_store_names_the_path(tmp_path):
    store = zarr.storage.LocalStore(tmp_path / "absent.zarr", read_only=True)
    with pytest.raises(FileNotFoundError, match=r"absent\.zarr"):
        zarrcrop.open_group(store)
    with pytest.raises(FileNotFoundError, match=r"absent\.zarr"):
        zarrcrop.open(store)


@pytest.mark.native
def test_fsspec_store_over_local_files_reads_natively(local_group):
    pytest.importorskip("fsspec")
    path, zg = local_group
    store = zarr.storage.FsspecStore.from_url(f"file://{path}", read_only=True)
    _check_reads(zarrcrop.open_group(store, strict=True)["gt"], zg["gt"], native=True)
    _check_reads(zarrcrop.open(store, "lr/rgb", strict=True), zg["lr/rgb"], native=True)


@pytest.mark.native
def test_storage_options_reach_fsspec(local_group):
    pytest.importorskip("fsspec")
    path, zg = local_group
    # local:// with storage_options: zarr-python builds an FsspecStore over the local files.
    g = zarrcrop.open_group(f"local://{path}", storage_options={"auto_mkdir": True})
    assert isinstance(g.zarr.store, zarr.storage.FsspecStore)
    fs = g.zarr.store.fs
    assert getattr(fs, "sync_fs", fs).auto_mkdir is True
    _check_reads(g["gt"], zg["gt"], native=True)
    ca = zarrcrop.open(f"local://{path}", "lr/rgb", storage_options={"auto_mkdir": True})
    _check_reads(ca, zg["lr/rgb"], native=True)


# --------------------------------------------------------------------------------------
# Non-local stores: read by zarr-python, with the reason
# --------------------------------------------------------------------------------------


def test_memory_store_object_falls_back():
    store = zarr.storage.MemoryStore()
    zg = _fill(store)
    g = zarrcrop.open_group(store)
    assert sorted(g) == ["gt", "lr"]
    _check_fallback(g["gt"], zg["gt"], ("MemoryStore",))
    _check_fallback(g["lr/rgb"], zg["lr/rgb"], ("MemoryStore",))
    _check_fallback(zarrcrop.open(store, "gt"), zg["gt"], ("MemoryStore",))
    _check_fallback(zarrcrop.open(zarr.storage.StorePath(store) / "gt"), zg["gt"], ("Memory",))
    assert dict(g["lr/rgb"].attrs) == {"units": "counts"}


def test_memory_store_strict_raises_fallback_error():
    store = zarr.storage.MemoryStore()
    _fill(store)
    with pytest.raises(zarrcrop.FallbackError, match="MemoryStore"):
        zarrcrop.open(store, "gt", strict=True)
    with pytest.raises(zarrcrop.FallbackError, match="MemoryStore"):
        zarrcrop.open_group(store, strict=True)["lr/rgb"]


@pytest.fixture
def memory_url():
    fsspec = pytest.importorskip("fsspec")
    url = f"memory://zarrcrop-{uuid.uuid4().hex}.zarr"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def test_fsspec_memory_url_falls_back(memory_url):
    zg = _fill(memory_url)
    g = zarrcrop.open_group(memory_url)
    _check_fallback(g["gt"], zg["gt"], ("memory",))
    _check_fallback(zarrcrop.open(memory_url, "lr/rgb"), zg["lr/rgb"], ("memory",))
    _check_fallback(zarrcrop.open(f"{memory_url}/gt"), zg["gt"], ("memory",))
    with pytest.raises(zarrcrop.FallbackError, match="memory"):
        zarrcrop.open(memory_url, "gt", strict=True)
    with pytest.raises(zarrcrop.FallbackError, match="memory"):
        zarrcrop.open_group(memory_url, strict=True)["gt"]


def test_missing_memory_url_names_it(memory_url):
    with pytest.raises(FileNotFoundError, match=memory_url):
        zarrcrop.open_group(memory_url)
    with pytest.raises(FileNotFoundError, match=memory_url):
        zarrcrop.open(memory_url, "gt")


def test_object_store_falls_back():
    obstore = pytest.importorskip("obstore")
    store = zarr.storage.ObjectStore(obstore.store.MemoryStore())
    zg = _fill(store)
    _check_fallback(zarrcrop.open_group(store)["gt"], zg["gt"], ("ObjectStore",))
    with pytest.raises(zarrcrop.FallbackError):
        zarrcrop.open(store, "gt", strict=True)


@pytest.mark.parametrize(
    ("url", "backend"),
    [("s3://zarrcrop-test/x.zarr", "s3fs"), ("gs://zarrcrop-test/x.zarr", "gcsfs"),
     ("https://example.invalid/x.zarr", "aiohttp")],
)  # fmt: skip
def test_remote_url_goes_to_zarr_python(url, backend):
    # Handed to zarr-python (not looked up as a local path); without the fsspec backend
    # installed, the error names the URL. With it, this would reach the network: skipped.
    if importlib.util.find_spec("fsspec") is None:
        pytest.skip("fsspec is not installed")
    if importlib.util.find_spec(backend) is not None:
        pytest.skip(f"{backend} is installed: opening {url} would use the network")
    with pytest.raises(ImportError, match=url) as info:
        zarrcrop.open_group(url, storage_options={"anon": True} if backend == "s3fs" else None)
    assert backend.removesuffix("fs") in str(info.value).lower()
    with pytest.raises(ImportError, match=url):
        zarrcrop.open(url, "gt")


# --------------------------------------------------------------------------------------
# Writable modes with the new store kinds
# --------------------------------------------------------------------------------------


def test_writable_file_url_creates_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "new.zarr"
    root = zarrcrop.open_group(f"file://{path}", mode="w")
    assert isinstance(root, zarrcrop.writable.WritableGroup)
    gt = root.create_dataset(
        "gt", shape=(4, 8), chunks=(2, 4), dtype="uint8", compressor=COMPRESSOR
    )
    gt[...] = np.arange(32, dtype=np.uint8).reshape(4, 8)
    assert (path / ".zgroup").is_file()  # at the path, not in a "file:" directory
    assert not (Path.cwd() / "file:").exists()
    assert gt.native, gt.fallback_reason
    assert_same(zarrcrop.open_group(f"file://{path}")["gt"][...], zarr.open_array(path / "gt")[...])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_writable_local_store_object(tmp_path, zarr_format):
    store = zarr.storage.LocalStore(tmp_path / "ls.zarr")
    root = zarrcrop.open_group(store, mode="w", zarr_format=zarr_format)
    assert root.zarr_format == zarr_format
    arr = root.create_dataset(
        "a", shape=(5, 6), chunks=(2, 3), dtype="int32", compressor=COMPRESSOR
    )
    arr[1:4] = 7
    assert arr.native, arr.fallback_reason
    again = zarrcrop.open_group(store, mode="a")
    assert_same(again["a"][...], zarr.open_array(tmp_path / "ls.zarr" / "a", mode="r")[...])


def test_writable_modes_with_memory_store():
    store = zarr.storage.MemoryStore()
    with pytest.raises(FileNotFoundError, match="MemoryStore"):
        zarrcrop.open_group(store, mode="r+")
    root = zarrcrop.open_group(store, mode="w")
    assert root.zarr_format == 2  # zarrcrop's default for new groups, as for paths
    arr = root.create_dataset("x", shape=(6,), chunks=(4,), dtype="float32", compressor=None)
    arr[...] = np.arange(6, dtype=np.float32)
    assert not arr.native and "MemoryStore" in arr.fallback_reason
    with pytest.raises(FileExistsError):
        zarrcrop.open_group(store, mode="w-")
    for mode in ("a", "r+"):
        kept = zarrcrop.open_group(store, mode=mode)
        assert_same(kept["x"][...], np.arange(6, dtype=np.float32))
    read_only = zarrcrop.open_group(store)
    assert type(read_only) is zarrcrop.CropGroup
    assert_same(read_only["x"][...], np.arange(6, dtype=np.float32))


def test_invalid_write_arguments_leave_a_store_untouched():
    store = zarr.storage.MemoryStore()
    zg = _fill(store)
    with pytest.raises(ValueError, match="mode"):
        zarrcrop.open_group(store, mode="x")
    with pytest.raises(ValueError, match="zarr_format"):
        zarrcrop.open_group(store, mode="w", zarr_format=4)
    assert sorted(zarrcrop.open_group(store)) == ["gt", "lr"]
    assert_same(zarrcrop.open(store, "gt")[...], zg["gt"][...])


# --------------------------------------------------------------------------------------
# Directory names that are not UTF-8
# --------------------------------------------------------------------------------------


@pytest.fixture
def non_utf8_group(tmp_path):
    raw = os.fsencode(tmp_path) + b"/\xff\xfe.zarr"
    try:
        os.mkdir(raw)
    except (OSError, UnicodeError):  # e.g. macOS: names must be UTF-8
        pytest.skip("this filesystem does not take names that are not UTF-8")
    path = os.fsdecode(raw)  # a str with surrogate escapes, as os.listdir gives it
    return path, _fill(path)


@pytest.mark.native
def test_non_utf8_directory_reads_natively(non_utf8_group):
    path, zg = non_utf8_group
    for store in (path, Path(path), zarr.storage.LocalStore(path, read_only=True)):
        g = zarrcrop.open_group(store, strict=True)
        _check_reads(g["gt"], zg["gt"], native=True)
        _check_reads(g["lr"]["rgb"], zg["lr/rgb"], native=True)
    ca = zarrcrop.open(path, "lr/rgb", strict=True)
    _check_reads(ca, zg["lr/rgb"], native=True)
    cached = zarrcrop.open(path, "gt", cache_bytes=1 << 20)
    assert_same(cached[2:5], zg["gt"][2:5])
    assert_same(cached[2:5], zg["gt"][2:5])


def test_non_utf8_directory_messages_are_readable(non_utf8_group):
    path, _ = non_utf8_group
    ca = zarrcrop.open(path, "gt")
    # Printable (no lone surrogates), with the undecodable bytes shown as escapes.
    assert ca.name.endswith("\\xff\\xfe.zarr/gt") and ca.name.encode("utf-8")
    assert repr(ca).encode("utf-8")
    with pytest.raises(KeyError) as info:
        zarrcrop.open_group(path)["nope"]
    message = info.value.args[0]
    assert "\\xff\\xfe.zarr" in message and message.encode("utf-8")
    with pytest.raises(FileNotFoundError) as missing:
        zarrcrop.open_group(path + "-missing")
    assert "\\xff\\xfe.zarr-missing" in str(missing.value)
    str(missing.value).encode("utf-8")


def test_non_utf8_directory_native_errors_are_readable(non_utf8_group):
    # A corrupt chunk's ChunkError names its path: the undecodable bytes come out as escapes,
    # not as a UnicodeDecodeError from the message.
    path, _ = non_utf8_group
    ca = zarrcrop.open(path, "gt")
    chunk = os.path.join(os.fsencode(path), b"gt", b".".join([b"0"] * len(SHAPE)))
    assert os.path.isfile(chunk)
    with open(chunk, "r+b") as f:
        f.write(b"\x07" * 16)
    with pytest.raises(zarrcrop.ChunkError) as info:
        ca[:]
    assert "\\xff\\xfe.zarr" in str(info.value)
    str(info.value).encode("utf-8")
