"""Output buffers: zarrcrop's own (cache-line aligned) and validation of caller-provided ones
(numpy, torch, memoryview, DLPack, ...)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ALIGN_FROM", "LINE", "aligned_empty", "aligned_in", "as_output_array"]

#: Alignment of the arrays zarrcrop allocates: a cache line.
LINE = 64
#: ... from this many bytes (smaller outputs stay in the CPU caches: alignment does not matter).
ALIGN_FROM = 1 << 20


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts on a cache-line boundary (from 1 MiB).

    NumPy aligns large arrays to 16 bytes; then every row of a crop whose row length is a
    multiple of 64 bytes (960 RGB pixels) starts and ends inside a cache line, and outputs
    larger than the CPU cache, written with whole-line non-temporal stores, need a plain
    read-modify-write for those lines (bench/PROFILE.md, session 5). torch's CPU allocator
    aligns to 64 bytes too.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # math.prod: np.prod is slow on small tuples
    if nbytes < ALIGN_FROM or dtype.hasobject:  # small (stays in cache), or Python objects
        return np.empty(shape, dtype=dtype)
    return aligned_in(np.empty(nbytes + LINE, dtype=np.uint8), shape, dtype, nbytes)


def aligned_in(raw: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> np.ndarray:
    """The array of ``shape`` and ``dtype`` (``nbytes`` bytes) starting at the first cache-line
    boundary of ``raw``, a uint8 buffer of at least ``nbytes + LINE`` bytes."""
    start = -raw.ctypes.data % LINE
    aligned: np.ndarray = raw[start : start + nbytes].view(dtype).reshape(shape)
    return aligned


def _to_numpy(out: Any) -> np.ndarray:
    if isinstance(out, np.ndarray):
        return out
    module = type(out).__module__
    if module.startswith("torch"):
        device = getattr(out, "device", None)
        if device is not None and getattr(device, "type", "cpu") != "cpu":
            raise ValueError(f"out must be a CPU tensor, got a tensor on {device}")
        try:
            view: np.ndarray = out.detach().numpy()  # shares memory with the tensor
            return view
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"out: cannot view this tensor as a numpy array ({exc})") from exc
    if hasattr(out, "__array_interface__") or hasattr(out, "__array_struct__"):
        return np.asarray(out)
    try:
        memoryview(out)
    except TypeError:
        pass
    else:
        return np.asarray(out)
    if hasattr(out, "__dlpack__"):
        return np.from_dlpack(out)
    raise ValueError(
        f"out must be a writable buffer (numpy array, torch tensor, memoryview, ...), "
        f"got {type(out).__name__}"
    )


def as_output_array(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Return a numpy view of ``out`` after checking it can receive the result in place."""
    arr = _to_numpy(out)
    problems = []
    if arr.dtype != dtype:
        problems.append(f"dtype {arr.dtype} (expected {dtype})")
    if tuple(arr.shape) != tuple(shape):
        problems.append(f"shape {tuple(arr.shape)} (expected {tuple(shape)})")
    if not arr.flags.c_contiguous:
        problems.append("a non-C-contiguous layout (expected C-contiguous)")
    if not arr.flags.writeable:
        problems.append("read-only memory (expected writable)")
    if problems:
        raise ValueError(
            f"out cannot receive the result in place: it has {', '.join(problems)}; "
            f"zarrcrop never copies into a temporary behind your back"
        )
    return arr
