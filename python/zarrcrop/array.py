"""CropArray: a read-only zarr array whose crops are read by the native core."""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import zarr

from . import _core
from ._config import resolve_strict
from ._native import (
    NativeLayout,
    Unsupported,
    describe_location,
    native_layout,
    readable_path,
)
from ._output import as_output_array
from ._output_pool import pooled_empty
from ._selection import (
    BasicSelection,
    NotBasicSelection,
    normalize_selection,
    positive_step_equivalent,
)
from .errors import FallbackError

__all__ = ["DEFAULT_PREFETCH_BUDGET", "CropArray"]

#: Bytes one :meth:`CropArray.prefetch` call asks the kernel to read ahead at most.
DEFAULT_PREFETCH_BUDGET: int = 256 << 20


class CropArray:
    """A read-only view of a zarr array that reads selections natively where it can.

    Create it with :func:`zarrcrop.open` or through :class:`zarrcrop.CropGroup`. Basic
    selections (integers, slices with any step, Ellipsis) on natively supported arrays are
    read by the C++ core with the GIL released; everything else goes through zarr-python and
    gives the same result.
    """

    def __init__(
        self, array: zarr.Array[Any], *, strict: bool | None = None, cache_bytes: int = 0
    ) -> None:
        cache_bytes = operator.index(cache_bytes)  # TypeError for floats and strings
        if not 0 <= cache_bytes < 2**63:
            raise ValueError(f"cache_bytes must be >= 0 and < 2**63, got {cache_bytes}")
        self._cache_bytes = cache_bytes
        self._array = array
        self._strict = resolve_strict(strict)
        self._layout: NativeLayout | None = None
        self._reader: _core.CropReader | None = None
        self._fallback_reason: str | None = None
        try:
            self._layout = native_layout(array)
        except Unsupported as exc:
            self._fallback_reason = str(exc)
        if self._layout is not None:
            self._reader = _core.CropReader(**self._layout.reader_args(cache_bytes))
        elif self._strict:
            raise FallbackError(f"{self.name}: {self._fallback_reason} (strict mode)")

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (for spawned DataLoader workers and multiprocessing): the zarr.Array is
        # pickled and the native reader rebuilt on the other side (its cache starts empty).
        return (_rebuild, (self._array, self._strict, self._cache_bytes))

    # -- metadata -------------------------------------------------------------------------

    @property
    def zarr(self) -> zarr.Array[Any]:
        """The underlying zarr-python array (used for metadata and fallbacks)."""
        return self._array

    @property
    def name(self) -> str:
        """Where the array lives: its directory for local stores, else the store and path.

        Bytes of the directory's name that are not UTF-8 show as ``\\xff`` escapes.
        """
        if self._layout is not None:
            return readable_path(self._layout.root)
        return describe_location(self._array)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self._array.chunks)

    @property
    def ndim(self) -> int:
        return len(self._array.shape)

    @property
    def size(self) -> int:
        # Exact (zarr-python 3.1 wraps around in int64, or fails, for shapes near 2**63).
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def fill_value(self) -> Any:
        return self._array.fill_value

    @property
    def attrs(self) -> Any:
        """The array's attributes (zarr-python's Attributes object)."""
        return self._array.attrs

    @property
    def zarr_format(self) -> int:
        return int(self._array.metadata.zarr_format)

    @property
    def native(self) -> bool:
        """True when basic selections are read by the native core."""
        return self._reader is not None

    @property
    def fallback_reason(self) -> str | None:
        """None when native, else one line saying why reads go through zarr-python."""
        return self._fallback_reason

    @property
    def strict(self) -> bool:
        """Whether falling back to zarr-python raises FallbackError instead."""
        return self._strict

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __repr__(self) -> str:
        how = "native" if self.native else f"fallback: {self._fallback_reason}"
        return (
            f"<zarrcrop.CropArray {self.name!r} shape={self.shape} dtype={self.dtype} "
            f"chunks={self.chunks} ({how})>"
        )

    # -- reading --------------------------------------------------------------------------

    def __getitem__(self, selection: Any) -> Any:
        return self.read(selection)

    if not TYPE_CHECKING:  # defined for its message only: type checkers still flag the write

        def __setitem__(self, selection, value):
            raise TypeError(
                f"{self.name}: this CropArray is read-only. To write, open its group with "
                'zarrcrop.open_group(path, mode="r+") (its arrays accept arr[...] = value), '
                'or the array with zarr.open_array(path, mode="r+")'
            )

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = np.asarray(self.read(...))
        return data if dtype is None else data.astype(dtype, copy=False)

    def read(self, selection: Any = (), out: Any = None) -> Any:
        """Read ``selection`` (anything ``__getitem__`` accepts).

        With ``out`` (a writable C-contiguous buffer of the result's shape and dtype: numpy
        array, torch tensor, memoryview, ...) the data is written into it and ``out`` is
        returned. A wrong shape, dtype or layout raises ValueError; nothing is copied into a
        temporary behind your back.
        """
        try:
            sel = normalize_selection(selection, self.shape)
        except NotBasicSelection:
            return self._read_fancy(selection, out)
        target = None
        if out is not None:
            target = as_output_array(out, sel.result_shape, self.dtype)
        buf = self._read_basic(sel, target)
        if out is not None:
            return out
        if self.ndim == 0 or (sel.ellipsis and not sel.result_shape):
            # zarr-python returns a NumPy scalar here (a 0-d array for plain integer tuples).
            return buf.reshape(())[()]
        return buf.reshape(sel.result_shape)

    def _read_basic(self, sel: BasicSelection, target: np.ndarray | None) -> np.ndarray:
        if target is None:
            buf = pooled_empty(sel.full_shape, self.dtype)
        else:
            buf = target.reshape(sel.full_shape)  # a view: only extent-1 axes differ
        if self._reader is not None:
            self._reader.read(list(sel.starts), list(sel.steps), list(sel.counts), buf)
            return buf
        zsel, flip = positive_step_equivalent(sel)
        data = np.asarray(self._array[cast(Any, zsel)])
        if flip:
            data = np.flip(data, axis=flip)
        # "equiv": zarr-python may hand back native byte order for big-endian arrays.
        np.copyto(buf, data.reshape(sel.full_shape), casting="equiv")
        return buf

    def _read_fancy(self, selection: Any, out: Any) -> Any:
        if self._strict:
            raise FallbackError(
                f"{self.name}: selection of type {type(selection).__name__} is not a basic "
                "selection and would be read by zarr-python (strict mode)"
            )
        result = self._array[_copy_index_arrays(selection)]
        if out is None:
            return result
        data = np.asarray(result)
        target = as_output_array(out, data.shape, self.dtype)
        np.copyto(target, data, casting="equiv")
        return out

    # -- batch crops ----------------------------------------------------------------------

    def read_crops(
        self,
        starts: Any,
        shape: Any,
        out: Any = None,
        boundary: str = "error",
        fill: Any = None,
    ) -> Any:
        """Read N crops of the same ``shape`` starting at ``starts`` (int array (N, ndim)).

        Returns an array of shape ``(N, *shape)`` (or ``out``, filled in place). The whole
        batch is read in one native call with the GIL released; a chunk shared by several
        crops is read and decoded once.

        ``boundary="error"`` (default): a crop reaching outside the array raises IndexError
        naming it. ``boundary="fill"``: parts outside the array (negative starts allowed) get
        ``fill`` (default: the array's fill value, or 0 when it has none).
        """
        start_arr, crop_shape = self._crop_args(starts, shape, boundary)
        result_shape = (start_arr.shape[0], *crop_shape)
        fill_value = self._fill_for(fill)
        if out is None:
            target = pooled_empty(result_shape, self.dtype)
        else:
            target = as_output_array(out, result_shape, self.dtype)
        if self._reader is not None:
            self._reader.read_crops(
                start_arr, list(crop_shape), target, boundary == "fill", fill_value.tobytes()
            )
        else:
            if self._strict:
                raise FallbackError(f"{self.name}: {self._fallback_reason} (strict mode)")
            self._read_crops_fallback(start_arr, crop_shape, target, boundary, fill_value)
        return target if out is None else out

    def prefetch(
        self,
        starts: Any,
        shape: Any,
        *,
        boundary: str = "error",
        budget: int = DEFAULT_PREFETCH_BUDGET,
    ) -> int:
        """Start reading, in the background, what crops to come will need.

        Takes the arguments of :meth:`read_crops` (no output) and asks the kernel to read
        ahead, into the page cache, the parts of the chunk files those crops touch that are
        not cached yet, each chunk once, until ``budget`` bytes have been asked for; then it
        returns at once, without waiting for the disk. Large Blosc chunks are read in pieces:
        while a chunk's header (its block offsets) is not cached, the header is asked for;
        once it is, the blocks the crops need. Other chunks are read ahead whole. Returns the
        bytes asked for (0 when everything is cached already, so that warm data pays only a
        check per chunk). Call it for the batches to come before reading the current one:
        ``CropLoader`` asks for batch ``i + 2`` (headers) and ``i + 1`` (blocks) before
        reading batch ``i``, so the disk works while batch ``i`` decodes. Arrays read through
        zarr-python (not native) return 0.

        On an object store (``s3://``, ``gs://``, ``http(s)://``), the requests a read of these
        crops will make are started on fetch-ahead threads and their bytes held in memory for
        that read (at most 256 MiB per process; bytes a read used are dropped when a later
        ``prefetch`` starts, unless one of the last two calls asked for them too); the value
        returned is then an estimate, and a failed fetch ahead is reported by the read that
        needs it.

        The read-ahead lands in the page cache, which the kernel may reclaim under memory
        pressure before the read comes: ``budget`` (default 256 MiB) bounds what one call
        asks for.
        """
        start_arr, crop_shape = self._crop_args(starts, shape, boundary)
        budget = operator.index(budget)
        if budget < 0:
            raise ValueError(f"budget must not be negative, got {budget}")
        if self._reader is None or budget == 0:
            return 0
        return int(self._reader.prefetch(start_arr, list(crop_shape), boundary == "fill", budget))

    def _crop_args(
        self, starts: Any, shape: Any, boundary: str
    ) -> tuple[np.ndarray, tuple[int, ...]]:
        """Validate read_crops-style arguments: (N, ndim) int64 starts and the crop shape."""
        if boundary not in ("error", "fill"):
            raise ValueError(f"boundary must be 'error' or 'fill', got {boundary!r}")
        if isinstance(shape, (str, bytes)):
            raise TypeError(f"crop shape must be a sequence of integers, got {shape!r}")
        try:
            entries = [shape] if np.ndim(shape) == 0 else list(shape)
            # operator.index: floats and strings are rejected, not truncated or parsed.
            crop_shape = tuple(operator.index(n) for n in entries)
        except TypeError as exc:
            raise TypeError(f"crop shape must be a sequence of integers, got {shape!r}") from exc
        if len(crop_shape) != self.ndim:
            raise ValueError(
                f"crop shape {crop_shape} must have one entry per array dimension ({self.ndim})"
            )
        if any(n < 0 for n in crop_shape):
            raise ValueError(f"crop shape {crop_shape} must not be negative")
        raw = np.asarray(starts)
        if raw.shape == (0,):  # an empty list: no crops (only this; (N, 0) is N crops of 0-d)
            raw = np.zeros((0, self.ndim), dtype=np.int64)
        if raw.ndim != 2 or raw.shape[1] != self.ndim:
            raise ValueError(f"starts must have shape (N, {self.ndim}), got {raw.shape}")
        if raw.dtype.kind not in "iu":
            raise ValueError(f"starts must be integers, got dtype {raw.dtype}")
        if raw.dtype.kind == "u" and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
            # uint64 starts past int64 would wrap around to negative ones.
            raise ValueError(f"starts must fit int64, got {int(raw.max())}")
        return np.ascontiguousarray(raw, dtype=np.int64), crop_shape

    def _fill_for(self, fill: Any) -> np.ndarray:
        if fill is None:
            fill = self._array.fill_value
        if fill is None:
            return np.zeros((), dtype=self.dtype)
        return np.asarray(fill, dtype=self.dtype).reshape(())

    def _read_crops_fallback(
        self,
        starts: np.ndarray,
        crop_shape: tuple[int, ...],
        target: np.ndarray,
        boundary: str,
        fill: np.ndarray,
    ) -> None:
        shape = self.shape
        for i, start in enumerate(starts.tolist()):
            lo = [max(s, 0) for s in start]
            hi = [min(s + c, n) for s, c, n in zip(start, crop_shape, shape, strict=True)]
            inside = all(
                a == s and b == s + c for a, b, s, c in zip(lo, hi, start, crop_shape, strict=True)
            )
            if not inside and boundary == "error":
                raise IndexError(
                    f"crop {i} starting at {tuple(start)} with shape {crop_shape} reaches "
                    f"outside the array of shape {shape}"
                )
            if not inside:
                target[i] = fill
            if any(b <= a for a, b in zip(lo, hi, strict=True)):
                continue
            src = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
            target[cast(Any, (i, *dst))] = np.asarray(self._array[src])

    def decode_seconds(
        self, starts: Any, shape: Any, *, shared: bool = False, boundary: str = "error"
    ) -> float:
        """Benchmark support: single-threaded CPU seconds to decode what these crops need.

        Takes the arguments of :meth:`read_crops`. Chunk files are read beforehand (untimed,
        then evicted from the CPU caches on x86, so their bytes are decoded from memory as a
        read finds them in the page cache) and nothing is stitched, so this is the
        validation + decompression cost of exactly the
        Blosc blocks zarrcrop would decode (for raw chunks, the copy of the needed bytes). With
        ``shared``, chunks shared by several crops count once (as in :meth:`read_crops`);
        otherwise each crop is costed alone (as in a loop of single reads). Dividing by the
        number of cores gives the decode bound that throughput is measured against.
        """
        if self._reader is None:
            raise FallbackError(f"{self.name}: not native ({self._fallback_reason})")
        start_arr, crop_shape = self._crop_args(starts, shape, boundary)
        return float(
            self._reader.decode_seconds(start_arr, list(crop_shape), shared, boundary == "fill")
        )

    def cache_info(self) -> dict[str, int]:
        """Decoded-chunk cache statistics: capacity, size (bytes), entries, hits, misses."""
        if self._reader is None:
            return {"capacity": 0, "size": 0, "entries": 0, "hits": 0, "misses": 0}
        return dict(self._reader.cache_info())

    def clear_cache(self) -> None:
        """Drop every decoded chunk held by the cache."""
        if self._reader is not None:
            self._reader.clear_cache()

    @property
    def oindex(self) -> Any:
        """Orthogonal indexing, through zarr-python."""
        if self._strict:
            raise FallbackError(f"{self.name}: oindex reads through zarr-python (strict mode)")
        return _CopyingIndexer(self._array.oindex)

    @property
    def vindex(self) -> Any:
        """Vectorized (coordinate) indexing, through zarr-python."""
        if self._strict:
            raise FallbackError(f"{self.name}: vindex reads through zarr-python (strict mode)")
        return _CopyingIndexer(self._array.vindex)


def _copy_index_arrays(selection: Any) -> Any:
    """``selection`` with its NumPy arrays copied.

    zarr-python (3.1) wraps negative entries of integer index arrays around *in place*, so the
    caller's array would change (and a second read with it select other elements).
    """
    if isinstance(selection, np.ndarray):
        return selection.copy()
    if isinstance(selection, tuple):
        return tuple(item.copy() if isinstance(item, np.ndarray) else item for item in selection)
    return selection


class _CopyingIndexer:
    """zarr-python's ``oindex`` / ``vindex``, reading with copies of the index arrays."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getitem__(self, selection: Any) -> Any:
        return self._inner[_copy_index_arrays(selection)]

    def __setitem__(self, selection: Any, value: Any) -> None:
        self._inner[_copy_index_arrays(selection)] = value


def _rebuild(array: zarr.Array[Any], strict: bool, cache_bytes: int) -> CropArray:
    return CropArray(array, strict=strict, cache_bytes=cache_bytes)
