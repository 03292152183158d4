"""Decides whether an array can be read natively and describes it to the C++ core.

Everything here works from zarr-python's parsed metadata objects (never a second JSON parser):
``zarr.Array.metadata`` is an ``ArrayV2Metadata`` or ``ArrayV3Metadata``. Codec objects are
compared through their ``get_config()`` / ``to_dict()`` forms, which are stable across zarr
releases (3.1 returns enums where later releases return strings).
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import zarr

__all__ = [
    "NativeLayout",
    "Unsupported",
    "describe_location",
    "native_layout",
    "readable_path",
    "store_label",
]

BLOSC_CNAMES = frozenset({"lz4", "lz4hc", "blosclz", "zstd", "zlib"})


class Unsupported(Exception):
    """The array cannot be read natively; the message is the one-line reason."""


@dataclass(frozen=True)
class NativeLayout:
    """Everything the C++ CropReader needs."""

    root: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    codecs: tuple[str, ...]  # bytes-to-bytes codecs in encoding order: blosc, zstd, crc32c
    key_prefix: str
    key_separator: str
    fill_value: bytes
    swap_width: int = 0  # > 0: chunks store the other byte order; swap units this wide
    order: str = "C"  # chunk memory layout: "C" or "F"
    shard_shape: tuple[int, ...] = ()  # sharded: files hold shards of this shape
    shard_index_location: str = "end"
    shard_index_crc32c: bool = True
    # A remote store: root is the URL chunk keys are relative to, and this fetches byte
    # ranges of them (zarrcrop.remote); None for a local directory.
    fetch: Any = field(default=None, compare=False)

    def reader_args(self, cache_bytes: int = 0) -> dict[str, Any]:
        """Keyword arguments of ``_core.CropReader`` for this layout."""
        return {
            "name": readable_path(self.root),
            # bytes: pybind11's std::string caster takes them, but not a str with surrogate
            # escapes (a directory name that is not valid UTF-8).
            "root": self.root.encode() if self.fetch is not None else os.fsencode(self.root),
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "itemsize": self.dtype.itemsize,
            "codecs": list(self.codecs),
            "key_prefix": self.key_prefix,
            "key_separator": self.key_separator,
            "fill_value": self.fill_value,
            "cache_bytes": int(cache_bytes),
            "swap_width": self.swap_width,
            "order": self.order,
            "shard_shape": list(self.shard_shape),
            "shard_index_location": self.shard_index_location,
            "shard_index_crc32c": self.shard_index_crc32c,
            "fetch": self.fetch,
        }


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def readable_path(path: str) -> str:
    """``path`` for messages: bytes that are not UTF-8 shown as ``\\xff`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _fsspec_local_path(store: Any) -> str | None:
    """The directory of an FsspecStore over fsspec's local filesystem (``file://`` URLs)."""
    fs = getattr(store, "fs", None)
    fs = getattr(fs, "sync_fs", fs)  # zarr wraps sync filesystems in AsyncFileSystemWrapper
    try:  # importlib: fsspec ships no type information
        local = importlib.import_module("fsspec.implementations.local").LocalFileSystem
    except ImportError:  # pragma: no cover - an FsspecStore exists only with fsspec
        return None
    return str(store.path) if isinstance(fs, local) else None


def store_label(store: Any) -> str:
    """One line naming a store for messages: its kind and location."""
    fs = getattr(store, "fs", None)
    if fs is not None and hasattr(store, "path"):
        protocol = getattr(getattr(fs, "sync_fs", fs), "protocol", "?")
        if isinstance(protocol, (tuple, list)):
            protocol = protocol[0] if protocol else "?"
        text = f"{type(store).__name__} {protocol}://{store.path}"
    else:
        text = f"{type(store).__name__} {store}"
    return " ".join(text.split())


def _local_root(node: zarr.Array[Any] | zarr.Group) -> str:
    """The directory of an array or group in a local store, else Unsupported."""
    store = node.store
    from zarr.storage import FsspecStore, LocalStore

    if isinstance(store, LocalStore):
        base = os.fspath(store.root)
    elif isinstance(store, FsspecStore) and (local := _fsspec_local_path(store)) is not None:
        base = local
    else:
        raise Unsupported(
            f"store {store_label(store)} is not a local directory store "
            "(zarrcrop reads local directories natively)"
        )
    return os.path.abspath(os.path.join(base, node.store_path.path))


def _location(node: zarr.Array[Any]) -> tuple[str, Any]:
    """(root, fetch): a local directory and None, or a remote store's URL and its fetcher;
    Unsupported naming why neither."""
    try:
        return _local_root(node), None
    except Unsupported as local:
        from .remote import RemoteUnsupported, remote_fetcher

        try:
            fetcher = remote_fetcher(node)
        except RemoteUnsupported as exc:
            raise Unsupported(f"{local}; {exc}") from None
        return fetcher.base_url, fetcher


def describe_location(node: zarr.Array[Any] | zarr.Group) -> str:
    """A readable location for messages: the directory for local stores, else store/path."""
    try:
        return readable_path(_local_root(node))
    except Unsupported:
        return f"{store_label(node.store)}/{node.path}".rstrip("/")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise Unsupported(f"dtype {dtype} is not supported natively")
    if not np.little_endian:  # pragma: no cover - no big-endian hosts in CI
        raise Unsupported("big-endian hosts are not supported natively")


INT64_MAX = 2**63 - 1
MAX_CHUNK_BYTES = 2**31 - 1  # Blosc headers hold sizes in int32 fields


def _check_geometry(
    shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int, shard_shape: tuple[int, ...]
) -> None:
    """Unsupported unless the native reader's int64 / 2 GiB limits hold.

    zarr-python accepts (and reads, as long as no chunk has to be materialized) shapes up to
    any size, so such arrays fall back to it rather than failing to open.
    """
    for what, values in (("shape", shape), ("chunk shape", chunks), ("shard shape", shard_shape)):
        if any(not 0 <= n <= INT64_MAX for n in values):
            raise Unsupported(f"{what} {values} does not fit the native reader's int64 range")
    if any(n <= 0 for n in chunks):
        raise Unsupported(f"chunk shape {chunks} is not positive")
    if itemsize * math.prod(chunks) > MAX_CHUNK_BYTES:
        raise Unsupported(f"chunk shape {chunks} is larger than the native reader's 2 GiB")
    if shard_shape:
        inner = math.prod(s // c for s, c in zip(shard_shape, chunks, strict=True))
        if 16 * inner > MAX_CHUNK_BYTES:
            raise Unsupported(f"shard shape {shard_shape}: index larger than the native 2 GiB")


def _fill_bytes(fill_value: Any, dtype: np.dtype) -> bytes:
    if fill_value is None:
        return bytes(dtype.itemsize)  # zarr-python reads missing chunks as zeros then
    return np.array(fill_value, dtype=dtype).tobytes()


def _blosc_from_config(config: dict[str, Any]) -> str:
    cname = str(_plain(config.get("cname")))
    if cname not in BLOSC_CNAMES:
        raise Unsupported(f"blosc cname {cname} is not supported natively")
    return "blosc"


def _gzip_native() -> bool:
    from . import _core

    return bool(_core.gzip_available())


def _swap_width(dtype: np.dtype) -> int:
    """Bytes per unit to swap for the other byte order (complex: each part)."""
    if dtype.itemsize == 1:
        return 0
    return dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize


class _Encoding(TypedDict, total=False):
    """How a format's metadata says chunks are keyed and encoded: the NativeLayout fields
    that _layout_v2 / _layout_v3 decide (the others come from the array itself)."""

    codecs: tuple[str, ...]
    key_prefix: str
    key_separator: str
    swap_width: int
    order: str
    shard_shape: tuple[int, ...]
    shard_index_location: str
    shard_index_crc32c: bool


def _layout_v2(meta: Any, dtype: np.dtype) -> _Encoding:
    if meta.order not in ("C", "F"):
        raise Unsupported(f"order {meta.order!r} is not supported natively")
    if meta.filters:
        names = ", ".join(str(f.codec_id) for f in meta.filters)
        raise Unsupported(f"filter {names} is not supported natively")
    codecs: tuple[str, ...] = ()
    if meta.compressor is not None:
        config = meta.compressor.get_config()
        codec_id = config.get("id")
        if codec_id == "blosc":
            codecs = (_blosc_from_config(config),)
        elif codec_id == "zstd":
            codecs = ("zstd",)
        elif codec_id == "gzip" and _gzip_native():
            codecs = ("gzip",)
        else:
            raise Unsupported(f"compressor {codec_id} is not supported natively")
    separator = meta.dimension_separator or "."
    # v2 big-endian dtypes read back big-endian (the stored bytes), so no swap is needed.
    return _Encoding(
        codecs=codecs, key_prefix="", key_separator=str(_plain(separator)), order=str(meta.order)
    )


def _layout_v3(meta: Any, dtype: np.dtype) -> _Encoding:
    if getattr(meta, "storage_transformers", ()):
        raise Unsupported("storage transformers are not supported natively")
    grid = meta.chunk_grid.to_dict()
    if str(grid.get("name")) != "regular":
        raise Unsupported(f"chunk grid {grid.get('name')} is not supported natively")
    codecs = [c.to_dict() for c in meta.codecs]
    sharding = None
    if codecs and codecs[0]["name"] == "sharding_indexed":
        if len(codecs) > 1:
            raise Unsupported(f"codec {codecs[1]['name']} after sharding is not supported natively")
        sharding = codecs[0].get("configuration") or {}
        codecs = [_codec_dict(c) for c in sharding.get("codecs", ())]
        if codecs and codecs[0]["name"] == "sharding_indexed":
            raise Unsupported("nested sharding is not supported natively")
    chain, endian = _bytes_chain(codecs)
    encoding = meta.chunk_key_encoding.to_dict()
    name = str(encoding["name"])
    separator = str(_plain((encoding.get("configuration") or {}).get("separator", "/")))
    if name not in ("default", "v2"):
        raise Unsupported(f"chunk key encoding {name} is not supported natively")
    layout = _Encoding(
        codecs=chain, key_prefix="c" if name == "default" else "", key_separator=separator
    )
    if endian == "big":  # zarr-python returns native (little-endian) arrays: swap
        layout["swap_width"] = _swap_width(dtype)
    if sharding is not None:
        layout["shard_shape"] = tuple(int(n) for n in grid["configuration"]["chunk_shape"])
        layout["shard_index_location"] = str(_plain(sharding.get("index_location", "end")))
        index_chain, index_endian = _bytes_chain(
            [_codec_dict(c) for c in sharding.get("index_codecs", ())]
        )
        if index_endian == "big" or index_chain not in ((), ("crc32c",)):
            raise Unsupported("shard index codecs other than bytes + crc32c are not supported")
        layout["shard_index_crc32c"] = index_chain == ("crc32c",)
    return layout


def _codec_dict(codec: Any) -> dict[str, Any]:
    """A codec (object or dict, as zarr versions differ) as its JSON form."""
    return codec if isinstance(codec, dict) else codec.to_dict()


def _bytes_chain(codecs: list[dict[str, Any]]) -> tuple[tuple[str, ...], Any]:
    """(bytes-to-bytes codec names, endian) of a `bytes` + codecs chain, or Unsupported."""
    names = [str(c["name"]) for c in codecs]
    if not names or names[0] != "bytes":
        raise Unsupported(f"codec {names[0] if names else 'chain'} is not supported natively")
    endian = _plain((codecs[0].get("configuration") or {}).get("endian"))
    chain: list[str] = []
    for position, codec in enumerate(codecs[1:]):
        codec_name = str(codec["name"])
        if codec_name == "blosc" and position == 0:
            chain.append(_blosc_from_config(codec.get("configuration") or {}))
        elif codec_name in ("zstd", "crc32c") or (codec_name == "gzip" and _gzip_native()):
            chain.append(codec_name)
        else:
            raise Unsupported(f"codec {codec_name} is not supported natively")
    return tuple(chain), endian


def native_layout(array: zarr.Array[Any]) -> NativeLayout:
    """Describe ``array`` for the native reader, or raise Unsupported with the reason."""
    meta = array.metadata
    dtype = np.dtype(array.dtype)
    root, fetch = _location(array)
    _check_dtype(dtype)
    if meta.zarr_format == 2:
        layout = _layout_v2(meta, dtype)
    elif meta.zarr_format == 3:
        layout = _layout_v3(meta, dtype)
    else:  # pragma: no cover - future formats
        raise Unsupported(f"zarr format {meta.zarr_format} is not supported natively")
    if layout["key_separator"] not in (".", "/"):
        separator = layout["key_separator"]
        raise Unsupported(f"chunk key separator {separator!r} is not supported natively")
    shape = tuple(int(n) for n in array.shape)
    chunks = tuple(int(n) for n in array.chunks)
    _check_geometry(shape, chunks, dtype.itemsize, layout.get("shard_shape", ()))
    return NativeLayout(
        root=root,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=_fill_bytes(meta.fill_value, dtype),
        fetch=fetch,
        **layout,
    )
