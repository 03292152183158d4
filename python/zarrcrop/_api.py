"""Entry points: open, open_group and the thread-pool settings."""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

import zarr
import zarr.storage
from zarr.abc.store import Store

from . import _core
from ._native import readable_path, store_label
from .array import CropArray
from .group import CropGroup

if TYPE_CHECKING:
    from .writable import WritableGroup

__all__ = ["get_num_threads", "open", "open_group", "set_num_threads"]

#: What zarr.open_array / zarr.open_group take as ``store``: paths, URLs, Store objects, ...
StoreLike: TypeAlias = "zarr.storage.StoreLike | os.PathLike[str]"
WriteMode: TypeAlias = Literal["w", "w-", "a", "r+"]
AccessMode: TypeAlias = Literal["r", "w", "w-", "a", "r+"]

_LOCAL_SCHEMES = ("file://", "local://")


def _is_url(store: str) -> bool:
    # zarr-python's rule (zarr.storage._common._is_fsspec_uri): anything else is a path.
    return "://" in store or ("::" in store and "local://" not in store)


class _Target:
    """Where to open: ``store`` as given to zarr, the local directory if any, the name shown."""

    def __init__(self, store: Any, storage_options: dict[str, Any] | None) -> None:
        self.store = store
        self.local: str | None = None
        if isinstance(store, os.PathLike):
            self.local = os.fsdecode(os.fspath(store))
            self.store = self.local
        elif isinstance(store, str) and not _is_url(store):
            self.local = store
        elif isinstance(store, str) and storage_options is None:
            # file:// URLs read natively, as fsspec (and so zarr-python) resolves them: the rest
            # of the URL is the path, not percent-decoded.
            scheme = next((s for s in _LOCAL_SCHEMES if store.startswith(s)), None)
            if scheme is not None and "::" not in store:
                self.local = store[len(scheme) :] or "."
                self.store = self.local
        elif isinstance(store, zarr.storage.LocalStore):
            self.local = os.fspath(store.root)
        elif isinstance(store, zarr.storage.StorePath) and isinstance(
            store.store, zarr.storage.LocalStore
        ):
            self.local = os.path.join(os.fspath(store.store.root), store.path)
        if self.local is None:
            self.shown = _describe(store)
        elif isinstance(store, os.PathLike) or store is self.local:  # a plain path
            self.shown = readable_path(str(Path(self.local)))
        else:  # a URL or Store object: the directory, then what was given
            self.shown = f"{readable_path(str(Path(self.local)))} ({_describe(store)})"
        self.kwargs: dict[str, Any] = {}
        if storage_options is not None:
            self.kwargs["storage_options"] = storage_options

    def check_exists(self, what: str) -> None:
        if self.local is not None and not os.path.exists(self.local):
            raise FileNotFoundError(f"no zarr {what} at {self.shown}")


def _describe(store: Any) -> str:
    if isinstance(store, str):
        return readable_path(store)
    if isinstance(store, os.PathLike):
        return readable_path(os.fsdecode(os.fspath(store)))
    if isinstance(store, zarr.storage.StorePath):
        return f"{store_label(store.store)}/{store.path}".rstrip("/")
    if isinstance(store, Store):
        return store_label(store)
    if store is None:  # zarr-python opens a new, empty in-memory store for it
        return "store None (a new in-memory store)"
    return f"a {type(store).__name__} store"


def _zarr_open(opener: Any, target: _Target, **kwargs: Any) -> Any:
    """``opener(store=..., mode="r", ...)``; a missing fsspec backend names the URL."""
    try:
        return opener(store=target.store, mode="r", **target.kwargs, **kwargs)
    except ImportError as exc:
        raise ImportError(f"cannot open {target.shown}: {exc}") from exc


def open(
    store: StoreLike | zarr.Array[Any],
    path: str | None = None,
    *,
    strict: bool | None = None,
    cache_bytes: int = 0,
    storage_options: dict[str, Any] | None = None,
) -> CropArray:
    """Open an array for reading.

    Parameters
    ----------
    store:
        What ``zarr.open_array`` takes: a filesystem path (str or Path) or ``file://`` URL of an
        array, or of a group with ``path`` naming the array inside it; another URL
        (``s3://``, ``gs://``, ``https://``, ``memory://``, with ``storage_options``); a zarr
        Store object (``LocalStore``, ``MemoryStore``, ``FsspecStore``, ``ObjectStore``, ...)
        or ``StorePath``; or an existing ``zarr.Array``. Local directories read natively,
        other stores through zarr-python (``fallback_reason`` says so).
    path:
        The array's path inside the group at ``store``, e.g. ``"lr/720p/rgb"``.
    strict:
        Raise :class:`zarrcrop.FallbackError` instead of reading through zarr-python. Default:
        the ``ZARRCROP_STRICT`` environment variable.
    cache_bytes:
        Size in bytes of an LRU cache of decoded chunks for this array (0, the default,
        disables it). Useful when crops revisit the same chunks.
    storage_options:
        fsspec options for a URL ``store``, as in zarr-python.
    """
    if isinstance(store, zarr.Array):
        if path is not None:
            raise ValueError("path= cannot be combined with a zarr.Array")
        return CropArray(store, strict=strict, cache_bytes=cache_bytes)
    if isinstance(store, zarr.Group):
        raise TypeError("store is a zarr.Group; pass path= with zarrcrop.open_group(...)[path]")
    target = _Target(store, storage_options)
    target.check_exists("array or group")
    where = target.shown if path is None else f"{target.shown} (path {path!r})"
    try:
        node = _zarr_open(zarr.open, target, path=path)
    except (FileNotFoundError, KeyError) as exc:
        raise FileNotFoundError(f"no zarr array at {where}") from exc
    if not isinstance(node, zarr.Array):
        raise ValueError(
            f"{where} is a zarr group, not an array; pass path= to name an array inside it "
            "or use zarrcrop.open_group"
        )
    return CropArray(node, strict=strict, cache_bytes=cache_bytes)


@overload
def open_group(
    store: StoreLike | zarr.Group,
    *,
    mode: Literal["r"] = "r",
    strict: bool | None = None,
    cache_bytes: int = 0,
    zarr_format: Literal[2, 3] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> CropGroup: ...


@overload
def open_group(
    store: StoreLike | zarr.Group,
    *,
    mode: WriteMode,
    strict: bool | None = None,
    cache_bytes: int = 0,
    zarr_format: Literal[2, 3] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> WritableGroup: ...


def open_group(
    store: StoreLike | zarr.Group,
    *,
    mode: AccessMode = "r",
    strict: bool | None = None,
    cache_bytes: int = 0,
    zarr_format: Literal[2, 3] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> CropGroup:
    """Open a group; arrays inside it come back as :class:`CropArray`.

    ``store`` is what ``zarr.open_group`` takes: a filesystem path (str or Path) or
    ``file://`` URL, another URL (with ``storage_options``), a zarr Store object or
    ``StorePath``, or an existing ``zarr.Group``. Arrays in local directories read natively,
    others through zarr-python (their ``fallback_reason`` says so). ``mode="r"``
    (the default) opens it read-only. ``mode="w"`` (create, overwriting), ``"w-"`` (create,
    fail if it exists), ``"a"`` (open or create) and ``"r+"`` (open existing) return a
    :class:`zarrcrop.writable.WritableGroup`: the tutorial's zarr-python 2 creation calls
    (``create_dataset(..., compressor=...)``, ``require_group``) work on it, new groups are zarr
    v2 unless ``zarr_format=3``, and its arrays read natively and accept writes. ``strict`` and
    ``cache_bytes`` apply to every array opened through the group (each array gets its own
    cache).
    """
    if mode != "r":
        return _open_writable(store, mode, zarr_format, strict, cache_bytes, storage_options)
    if isinstance(store, zarr.Group):
        return CropGroup(store, strict=strict, cache_bytes=cache_bytes)
    if isinstance(store, zarr.Array):
        raise TypeError("store is a zarr.Array, not a group; use zarrcrop.open")
    target = _Target(store, storage_options)
    target.check_exists("group")
    try:
        group = _zarr_open(zarr.open_group, target)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no zarr group at {target.shown}") from exc
    return CropGroup(group, strict=strict, cache_bytes=cache_bytes)


def _open_writable(
    store: Any,
    mode: str,
    zarr_format: Literal[2, 3] | None,
    strict: bool | None,
    cache_bytes: int,
    storage_options: dict[str, Any] | None,
) -> WritableGroup:
    from .writable import _WRITE_MODES, open_writable_group

    def wrap(where: Any) -> WritableGroup:
        return open_writable_group(
            where, mode=mode, zarr_format=zarr_format, strict=strict, cache_bytes=cache_bytes
        )

    if isinstance(store, zarr.Group):
        return wrap(store)
    # Checked before anything is created: open_writable_group checks them only afterwards here.
    if mode not in _WRITE_MODES:
        raise ValueError(f"mode must be one of 'r', {', '.join(map(repr, _WRITE_MODES))}")
    if zarr_format not in (None, 2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    target = _Target(store, storage_options)
    if target.local is not None and isinstance(target.store, str):
        return wrap(target.store)  # paths and file:// URLs: writable.py's own semantics
    # Store objects and other URLs: the same modes, through zarr-python.
    group: zarr.Group | None = None
    if mode in ("a", "r+"):
        try:
            group = zarr.open_group(
                store=target.store, mode="r+", zarr_format=zarr_format, **target.kwargs
            )
        except FileNotFoundError:
            if mode == "r+":
                raise FileNotFoundError(f"no zarr group at {target.shown}") from None
    if group is None:
        group = zarr.open_group(
            store=target.store,
            mode="w" if mode == "w" else "w-",
            zarr_format=zarr_format or 2,
            **target.kwargs,
        )
    return wrap(group)


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


def set_io_threads(n: int) -> None:
    """Read at most ``n`` byte ranges from the device at once (the I/O threads), per process.

    Chunks that are not in the page cache are read by I/O threads of their own, separate
    from the decode threads, into buffers of their own, and each piece is decoded as soon as it
    has arrived. The default, twice :func:`get_num_threads` within ``[4, 64]``, keeps the
    decode threads fed on local disks; deeper queues (fast NVMe arrays, network file systems)
    may want more. At most 64 MiB is held read ahead of decoding, over all reads.
    ``1 <= n <= 1024``.
    """
    n = operator.index(n)
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"number of I/O threads must be between 1 and {MAX_THREADS}, got {n}")
    _core.set_io_threads(n)


def get_io_threads() -> int:
    """The most byte ranges read from the device at once (see :func:`set_io_threads`)."""
    return int(_core.get_io_threads())


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
