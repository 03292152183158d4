"""Entry points: open, open_group and the thread-pool settings."""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Any

import zarr

from . import _core
from .array import CropArray
from .group import CropGroup

__all__ = ["get_num_threads", "open", "open_group", "set_num_threads"]

StoreLike = str | os.PathLike[str] | zarr.Array


def open(
    store: StoreLike,
    path: str | None = None,
    *,
    strict: bool | None = None,
    cache_bytes: int = 0,
) -> CropArray:
    """Open an array for reading.

    Parameters
    ----------
    store:
        A filesystem path (str or Path) of an array, or of a group with ``path`` naming the
        array inside it; or an existing ``zarr.Array`` (any store; local stores read natively).
    path:
        The array's path inside the group at ``store``, e.g. ``"lr/720p/rgb"``.
    strict:
        Raise :class:`zarrcrop.FallbackError` instead of reading through zarr-python. Default:
        the ``ZARRCROP_STRICT`` environment variable.
    cache_bytes:
        Size in bytes of an LRU cache of decoded chunks for this array (0, the default,
        disables it). Useful when crops revisit the same chunks.
    """
    if isinstance(store, zarr.Array):
        if path is not None:
            raise ValueError("path= cannot be combined with a zarr.Array")
        return CropArray(store, strict=strict, cache_bytes=cache_bytes)
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a path or a zarr.Array, got {type(store).__name__}")
    location = Path(store)
    if not location.exists():
        raise FileNotFoundError(f"no zarr array or group at {location}")
    try:
        node: Any = zarr.open(store=os.fspath(location), mode="r", path=path)
    except (FileNotFoundError, KeyError) as exc:
        where = location if path is None else f"{location} (path {path!r})"
        raise FileNotFoundError(f"no zarr array at {where}") from exc
    if not isinstance(node, zarr.Array):
        where = location if path is None else f"{location} (path {path!r})"
        raise ValueError(
            f"{where} is a zarr group, not an array; pass path= to name an array inside it "
            "or use zarrcrop.open_group"
        )
    return CropArray(node, strict=strict, cache_bytes=cache_bytes)


def open_group(
    store: str | os.PathLike[str] | zarr.Group,
    *,
    mode: str = "r",
    strict: bool | None = None,
    cache_bytes: int = 0,
    zarr_format: int | None = None,
) -> CropGroup:
    """Open a group; arrays inside it come back as :class:`CropArray`.

    ``store`` is a filesystem path (str or Path) or an existing ``zarr.Group``. ``mode="r"``
    (the default) opens it read-only. ``mode="w"`` (create, overwriting), ``"w-"`` (create,
    fail if it exists), ``"a"`` (open or create) and ``"r+"`` (open existing) return a
    :class:`zarrcrop.writable.WritableGroup`: the tutorial's zarr-python 2 creation calls
    (``create_dataset(..., compressor=...)``, ``require_group``) work on it, new groups are zarr
    v2 unless ``zarr_format=3``, and its arrays read natively and accept writes. ``strict`` and
    ``cache_bytes`` apply to every array opened through the group (each array gets its own
    cache).
    """
    if mode != "r":
        from .writable import open_writable_group

        return open_writable_group(
            store, mode=mode, zarr_format=zarr_format, strict=strict, cache_bytes=cache_bytes
        )
    if isinstance(store, zarr.Group):
        return CropGroup(store, strict=strict, cache_bytes=cache_bytes)
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a path or a zarr.Group, got {type(store).__name__}")
    location = Path(store)
    if not location.exists():
        raise FileNotFoundError(f"no zarr group at {location}")
    try:
        group = zarr.open_group(store=os.fspath(location), mode="r")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no zarr group at {location}") from exc
    return CropGroup(group, strict=strict, cache_bytes=cache_bytes)


#: Largest native thread pool set_num_threads accepts (the C++ core's limit).
MAX_THREADS: int = _core.MAX_THREADS


def set_num_threads(n: int) -> None:
    """Size the native thread pool (the calling thread counts as one): ``1 <= n <= 1024``."""
    n = operator.index(n)  # TypeError for floats and strings rather than truncating them
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"number of threads must be between 1 and {MAX_THREADS}, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The native thread pool's size; by default the CPUs this process may run on."""
    return int(_core.get_num_threads())


#: Default of set_map_limit: 64 MiB of chunk files kept mapped per process.
DEFAULT_MAP_LIMIT: int = _core.DEFAULT_MAP_LIMIT


def set_map_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of chunk files memory-mapped between reads (per process).

    Native reads decode compressed Blosc blocks straight out of read-only mappings of the chunk
    files, which saves the kernel's copy of them into a buffer (about a tenth of a crop read's
    CPU time). Mappings are kept between reads, least recently used files unmapped first, up
    to this many bytes of mapped files (default :data:`DEFAULT_MAP_LIMIT`; a file larger than
    the limit is read with ``pread``). Pages a read touches count in the process's RSS; they
    are the page cache's, clean and shared. ``0`` turns mapping off: every read uses ``pread``.

    A chunk file truncated while a read decodes from its mapping raises :class:`ChunkError`
    (the process's SIGBUS handler recognises faults inside zarrcrop's mappings and passes any
    other SIGBUS on to the handler installed before).
    """
    nbytes = operator.index(nbytes)
    if not 0 <= nbytes < 2**63:
        raise ValueError(f"map limit must be >= 0 and < 2**63, got {nbytes}")
    _core.set_map_limit(nbytes)


def get_map_limit() -> int:
    """The most bytes of chunk files kept mapped between reads (see :func:`set_map_limit`)."""
    return int(_core.get_map_limit())


def map_info() -> dict[str, int]:
    """Mapped chunk files of this process.

    Keys: ``limit`` and ``mapped`` (bytes), ``files`` (held mapped), ``hits`` and ``misses``
    (lookups by native reads since the last :func:`clear_maps`).
    """
    return {k: int(v) for k, v in _core.map_info().items()}


def clear_maps() -> None:
    """Unmap every chunk file held (each as soon as no read uses it) and reset the counters."""
    _core.clear_maps()


#: Default of set_index_cache_limit: 32 MiB of parsed shard indexes per process.
DEFAULT_INDEX_CACHE_LIMIT: int = _core.DEFAULT_INDEX_CACHE_LIMIT


def set_index_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of parsed shard indexes between reads (per process).

    Native reads of sharded (zarr v3 ``sharding_indexed``) arrays read a shard's index once
    and keep it, least recently used first out, within this many bytes (16 bytes per inner
    chunk; default :data:`DEFAULT_INDEX_CACHE_LIMIT`). An index larger than the limit is read
    for each use and not kept; ``0`` keeps none. A kept index is used again only for the same
    file at the same size and modification time.
    """
    nbytes = operator.index(nbytes)
    if not 0 <= nbytes < 2**63:
        raise ValueError(f"index cache limit must be >= 0 and < 2**63, got {nbytes}")
    _core.set_index_cache_limit(nbytes)


def get_index_cache_limit() -> int:
    """The most bytes of parsed shard indexes kept between reads."""
    return int(_core.get_index_cache_limit())


def index_cache_info() -> dict[str, int]:
    """Parsed shard indexes kept: ``limit`` and ``size`` (bytes), ``entries``, ``hits``,
    ``misses`` (since the last :func:`clear_index_cache`)."""
    return {k: int(v) for k, v in _core.index_cache_info().items()}


def clear_index_cache() -> None:
    """Drop every parsed shard index kept and reset the counters."""
    _core.clear_index_cache()
