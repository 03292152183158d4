"""Decides whether an array can be read natively and describes it to the C++ core.

Everything here works from zarr-python's parsed metadata objects (never a second JSON parser):
``zarr.Array.metadata`` is an ``ArrayV2Metadata`` or ``ArrayV3Metadata``. Codec objects are
compared through their ``get_config()`` / ``to_dict()`` forms, which are stable across zarr
releases (3.1 returns enums where later releases return strings).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

__all__ = ["NativeLayout", "Unsupported", "describe_location", "native_layout"]

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
    compressor: str  # "none" or "blosc"
    key_prefix: str
    key_separator: str
    fill_value: bytes


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def _local_root(array: zarr.Array) -> str:
    store = array.store
    try:
        from zarr.storage import LocalStore
    except ImportError as exc:  # pragma: no cover - zarr < 3
        raise Unsupported("zarr-python 3 is required for native reads") from exc
    if not isinstance(store, LocalStore):
        raise Unsupported(f"store {type(store).__name__} is not a local directory store")
    root = os.path.join(os.fspath(store.root), array.store_path.path)
    return os.path.abspath(root)


def describe_location(array: zarr.Array) -> str:
    """A readable location for messages: the directory for local stores, else store/path."""
    try:
        return _local_root(array)
    except Unsupported:
        return f"{array.store}/{array.path}".rstrip("/")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise Unsupported(f"dtype {dtype} is not supported natively")
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and np.little_endian is False):
        raise Unsupported(f"big-endian dtype {dtype.str} is not supported natively")


def _fill_bytes(fill_value: Any, dtype: np.dtype) -> bytes:
    if fill_value is None:
        return bytes(dtype.itemsize)  # zarr-python reads missing chunks as zeros then
    return np.array(fill_value, dtype=dtype).tobytes()


def _blosc_from_config(config: dict[str, Any]) -> str:
    cname = str(_plain(config.get("cname")))
    if cname not in BLOSC_CNAMES:
        raise Unsupported(f"blosc cname {cname} is not supported natively")
    return "blosc"


def _layout_v2(meta: Any, dtype: np.dtype) -> tuple[str, str, str]:
    if meta.order != "C":
        raise Unsupported(f"order {meta.order!r} (Fortran) is not supported natively")
    if meta.filters:
        names = ", ".join(str(f.codec_id) for f in meta.filters)
        raise Unsupported(f"filter {names} is not supported natively")
    compressor = "none"
    if meta.compressor is not None:
        config = meta.compressor.get_config()
        if config.get("id") != "blosc":
            raise Unsupported(f"compressor {config.get('id')} is not supported natively")
        compressor = _blosc_from_config(config)
    separator = meta.dimension_separator or "."
    return compressor, "", str(_plain(separator))


def _layout_v3(meta: Any, dtype: np.dtype) -> tuple[str, str, str]:
    if getattr(meta, "storage_transformers", ()):
        raise Unsupported("storage transformers are not supported natively")
    grid = meta.chunk_grid.to_dict()
    if str(grid.get("name")) != "regular":
        raise Unsupported(f"chunk grid {grid.get('name')} is not supported natively")
    codecs = [c.to_dict() for c in meta.codecs]
    names = [str(c["name"]) for c in codecs]
    if not names or names[0] != "bytes":
        raise Unsupported(f"codec {names[0] if names else 'chain'} is not supported natively")
    endian = _plain((codecs[0].get("configuration") or {}).get("endian"))
    if endian == "big" and dtype.itemsize > 1:
        raise Unsupported("bytes codec with big endian is not supported natively")
    compressor = "none"
    rest = codecs[1:]
    if rest and rest[0]["name"] == "blosc":
        compressor = _blosc_from_config(rest[0].get("configuration") or {})
        rest = rest[1:]
    if rest:
        raise Unsupported(f"codec {rest[0]['name']} is not supported natively")
    encoding = meta.chunk_key_encoding.to_dict()
    name = str(encoding["name"])
    separator = str(_plain((encoding.get("configuration") or {}).get("separator", "/")))
    if name == "default":
        return compressor, "c", separator
    if name == "v2":
        return compressor, "", separator
    raise Unsupported(f"chunk key encoding {name} is not supported natively")


def native_layout(array: zarr.Array) -> NativeLayout:
    """Describe ``array`` for the native reader, or raise Unsupported with the reason."""
    meta = array.metadata
    dtype = np.dtype(array.dtype)
    root = _local_root(array)
    _check_dtype(dtype)
    if meta.zarr_format == 2:
        compressor, prefix, separator = _layout_v2(meta, dtype)
    elif meta.zarr_format == 3:
        compressor, prefix, separator = _layout_v3(meta, dtype)
    else:  # pragma: no cover - future formats
        raise Unsupported(f"zarr format {meta.zarr_format} is not supported natively")
    if separator not in (".", "/"):
        raise Unsupported(f"chunk key separator {separator!r} is not supported natively")
    return NativeLayout(
        root=root,
        shape=tuple(int(n) for n in array.shape),
        chunks=tuple(int(n) for n in array.chunks),
        dtype=dtype,
        compressor=compressor,
        key_prefix=prefix,
        key_separator=separator,
        fill_value=_fill_bytes(meta.fill_value, dtype),
    )
