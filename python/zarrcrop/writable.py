"""Writable groups: ``zarrcrop.open_group(path, mode="w"|"a"|"r+"|"w-")``.

zarr-python 3 creates zarr v3 groups by default and rejects the zarr-python 2 style
``create_dataset(..., compressor=numcodecs.Blosc(...))`` that the tutorial uses. The writable group
here accepts those arguments, writes zarr v2 by default (``.zgroup``, ``.zarray``), and returns
arrays that read natively (they are :class:`zarrcrop.CropArray`) and forward writes to zarr-python.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from .array import CropArray
from .group import CropGroup
from .presets import compressor_preset, v3_compressor

__all__ = ["WritableArray", "WritableGroup", "open_writable_group", "v3_compressor"]

_WRITE_MODES = ("w", "a", "r+", "w-")


class WritableArray(CropArray):
    """A :class:`CropArray` that also accepts writes.

    Reads (``arr[...]``, :meth:`read`, :meth:`read_crops`) go through zarrcrop's native reader,
    which reads the chunk files on every call and so always sees the latest writes. Writes
    (``arr[...] = value``) and everything else zarr-python offers (``resize``, ``append``, ...)
    are forwarded to the underlying ``zarr.Array``.
    """

    def __init__(
        self, array: zarr.Array[Any], *, strict: bool | None = None, cache_bytes: int = 0
    ) -> None:
        _refuse_read_only(array, "zarr.Array")
        self._cache_bytes = cache_bytes
        super().__init__(array, strict=strict, cache_bytes=cache_bytes)

    def __setitem__(self, selection: Any, value: Any) -> None:
        self.zarr[selection] = value

    def resize(self, *shape: Any) -> None:
        """Resize like ``zarr.Array.resize``; the native reader is reopened for the new shape."""
        new_shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        self.zarr.resize(tuple(new_shape))
        self._reopen()

    def append(self, data: Any, axis: int = 0) -> tuple[int, ...]:
        """Append like ``zarr.Array.append``; returns the new shape."""
        result = self.zarr.append(data, axis=axis)
        self._reopen()
        return tuple(result)

    def _reopen(self) -> None:
        """Reopen the native reader after a resize or append (it holds the old shape)."""
        CropArray.__init__(self, self.zarr, strict=self.strict, cache_bytes=self._cache_bytes)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes CropArray does not define: hand them to zarr-python.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.zarr, name)

    def __repr__(self) -> str:
        return super().__repr__().replace("<zarrcrop.CropArray", "<zarrcrop.WritableArray", 1)


def _refuse_read_only(node: Any, kind: str) -> None:
    """Refuse a node of a read-only store here, not with zarr-python's error at the first write."""
    store = getattr(node, "store", None)
    if getattr(store, "read_only", False):
        root = getattr(store, "root", store)
        where = f"{root}/{node.path}" if getattr(node, "path", "") else f"{root}"
        raise ValueError(
            f"{where}: this {kind} was opened read-only (mode='r') and cannot be written; "
            "open it with mode='r+' (or 'a'), e.g. zarrcrop.open_group(path, mode='r+')"
        )


class WritableGroup(CropGroup):
    """A writable zarr group with the zarr-python 2 creation API the tutorial uses.

    ``create_dataset``/``create_array``/``require_dataset`` accept ``compressor=`` (a numcodecs
    codec, ``None`` for no compression) as well as zarr-python 3's ``compressors=``; arrays come
    back as :class:`WritableArray` (native reads, forwarded writes), subgroups as
    :class:`WritableGroup`. Unknown attributes are forwarded to the ``zarr.Group``.
    """

    def __init__(
        self, group: zarr.Group, *, strict: bool | None = None, cache_bytes: int = 0
    ) -> None:
        _refuse_read_only(group, "zarr.Group")
        super().__init__(group, strict=strict, cache_bytes=cache_bytes)

    def _wrap(self, node: Any) -> WritableArray | WritableGroup:
        if isinstance(node, zarr.Array):
            return self._wrap_array(node)
        return self._wrap_group(node)

    def _wrap_array(self, array: zarr.Array[Any]) -> WritableArray:
        return WritableArray(array, strict=self._strict, cache_bytes=self._cache_bytes)

    def _wrap_group(self, group: zarr.Group) -> WritableGroup:
        return WritableGroup(group, strict=self._strict, cache_bytes=self._cache_bytes)

    def __getitem__(self, key: str) -> WritableArray | WritableGroup:
        return self._wrap(self._group[key])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._group, name)

    def __delitem__(self, key: str) -> None:
        del self._group[key]

    def _array_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kw = dict(kwargs)
        fmt = self.zarr_format
        has_compressor = "compressor" in kw
        compressor = kw.pop("compressor", None)
        if has_compressor and "compressors" in kw:
            raise TypeError("pass compressor= or compressors=, not both")
        if has_compressor:
            kw["compressors"] = compressor
        elif "compressors" not in kw:
            kw["compressors"] = compressor_preset("zstd")
        if fmt == 3 and kw["compressors"] is not None:
            comps = kw["compressors"]
            if isinstance(comps, (list, tuple)):
                kw["compressors"] = [v3_compressor(c) for c in comps]
            else:
                kw["compressors"] = v3_compressor(comps)
        # zarr-python 2 names and defaults
        if "dimension_separator" in kw:
            sep = kw.pop("dimension_separator")
            if sep is not None:
                kind = "v2" if fmt == 2 else "default"
                kw["chunk_key_encoding"] = {"name": kind, "separator": sep}
        kw.setdefault("fill_value", 0)
        for legacy in ("synchronizer", "cache_metadata", "cache_attrs", "write_empty_chunks"):
            kw.pop(legacy, None)
        if "chunks" in kw and kw["chunks"] is None:
            kw["chunks"] = "auto"
        if "chunks" in kw and isinstance(kw["chunks"], int):
            kw["chunks"] = (kw["chunks"],) * len(tuple(kw.get("shape", ())))
        return kw

    def create_array(self, name: str, **kwargs: Any) -> WritableArray:
        """Create an array (``zarr.Group.create_array`` arguments, plus ``compressor=``).

        Without ``compressor``/``compressors`` the array gets zarrcrop's default, Blosc zstd
        clevel 5 bitshuffle, which zarrcrop reads natively. ``fill_value`` defaults to 0.
        """
        data = kwargs.get("data")
        if data is not None:
            kwargs.setdefault("shape", None)
            kwargs.setdefault("dtype", None)
            if kwargs["shape"] is None:
                kwargs.pop("shape")
            if kwargs["dtype"] is None:
                kwargs.pop("dtype")
        return self._wrap_array(self._group.create_array(name, **self._array_kwargs(kwargs)))

    def create_dataset(self, name: str, **kwargs: Any) -> WritableArray:
        """zarr-python 2's ``create_dataset``: same as :meth:`create_array`."""
        return self.create_array(name, **kwargs)

    def require_dataset(
        self, name: str, shape: Any, dtype: Any = None, **kwargs: Any
    ) -> WritableArray:
        """Open array ``name`` if it exists with this shape (and dtype), else create it."""
        if name in self._group:
            node = self._group[name]
            if not isinstance(node, zarr.Array):
                raise TypeError(f"{name!r} is a group, not an array")
            if tuple(node.shape) != tuple(shape):
                raise TypeError(f"{name!r}: shape {node.shape} does not match {tuple(shape)}")
            if dtype is not None and node.dtype != zarr_dtype(dtype):
                raise TypeError(f"{name!r}: dtype {node.dtype} does not match {dtype}")
            return self._wrap_array(node)
        return self.create_array(name, shape=shape, dtype=dtype, **kwargs)

    require_array = require_dataset

    def create_group(self, name: str, **kwargs: Any) -> WritableGroup:
        """Create a subgroup (``name`` may contain "/")."""
        return self._wrap_group(self._group.create_group(name, **kwargs))

    def require_group(self, name: str, **kwargs: Any) -> WritableGroup:
        """Open or create a subgroup (``name`` may contain "/", e.g. ``"lr/720p"``)."""
        return self._wrap_group(self._group.require_group(name, **kwargs))

    def array_items(self) -> Iterator[tuple[str, WritableArray]]:
        """(name, array) for each array directly in this group."""
        for key, array in self._group.arrays():
            yield key, self._wrap_array(array)

    def __repr__(self) -> str:
        return f"<zarrcrop.WritableGroup {self.name!r} (zarr v{self.zarr_format})>"


def zarr_dtype(dtype: Any) -> Any:
    """``dtype`` as a numpy dtype, to compare with an existing array's."""
    return np.dtype(dtype)


def open_writable_group(
    store: str | os.PathLike[str] | zarr.Group,
    *,
    mode: str,
    zarr_format: int | None = None,
    strict: bool | None = None,
    cache_bytes: int = 0,
) -> WritableGroup:
    """Open or create a group for writing (``mode`` "w", "a", "r+" or "w-").

    New groups are zarr v2 unless ``zarr_format=3``; existing groups keep their format.
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"mode must be one of 'r', {', '.join(map(repr, _WRITE_MODES))}")
    if zarr_format not in (None, 2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if isinstance(store, zarr.Group):
        return WritableGroup(store, strict=strict, cache_bytes=cache_bytes)
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a path or a zarr.Group, got {type(store).__name__}")
    location = Path(store)
    exists = (location / ".zgroup").exists() or (location / "zarr.json").exists()
    if mode == "r+" and not exists:
        raise FileNotFoundError(f"no zarr group at {location}")
    if mode == "w-" and location.exists() and any(location.iterdir()):
        raise FileExistsError(f"{location} already exists")
    if exists and mode in ("a", "r+"):
        group = zarr.open_group(
            store=os.fspath(location), mode="r+", zarr_format=cast(Any, zarr_format)
        )
    else:
        group = zarr.open_group(
            store=os.fspath(location),
            mode="w" if mode == "w" else "w-",
            zarr_format=cast(Any, zarr_format or 2),
        )
    return WritableGroup(group, strict=strict, cache_bytes=cache_bytes)
