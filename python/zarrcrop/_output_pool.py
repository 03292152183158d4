"""Large output arrays reused once nothing references them.

A fresh NumPy array of tens of MiB (a ``read_crops`` batch) is a new memory mapping every time:
the kernel zeroes and faults in every page of it on first write, about 9% of a warm batch of
16 960x960 crops (bench/PROFILE.md, session 13). The pool keeps the buffers of large outputs
and hands one out again once the caller has dropped every array viewing it (its reference
count says so), so a loop of reads writes into memory that is already mapped. Buffers a
caller still holds are never reused; at most ``limit`` bytes are kept (``set_output_pool_limit``).
"""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Any

import numpy as np

from ._output import LINE, aligned_empty, aligned_in

__all__ = [
    "DEFAULT_OUTPUT_POOL_LIMIT",
    "POOL_FROM",
    "get_output_pool_limit",
    "output_pool_info",
    "pooled_empty",
    "set_output_pool_limit",
]

#: Outputs from this size come from the pool (smaller ones: the C allocator reuses its heap).
POOL_FROM = 8 << 20
#: Bytes of buffers kept by default (in use or free): five batches of 16 960x960 RGB crops.
DEFAULT_OUTPUT_POOL_LIMIT = 256 << 20


def _free_refcount() -> int:
    """``sys.getrefcount(bufs[i])`` of a list item that nothing else references (measured,
    not assumed: interpreters count the call's own reference differently)."""
    probe = [np.empty(1, dtype=np.uint8)]
    return sys.getrefcount(probe[0])


_FREE = _free_refcount()


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.limit = DEFAULT_OUTPUT_POOL_LIMIT
        self.bufs: list[np.ndarray] = []  # raw uint8 buffers, each LINE bytes larger than used
        self.reused = 0
        self.allocated = 0
        self.poison: int | None = None  # tests: fill reused buffers with this byte

    def take(self, nbytes: int) -> np.ndarray:
        need = nbytes + LINE
        with self.lock:
            bufs = self.bufs
            for i in range(len(bufs)):
                # Free: only this list holds it. Not more than twice the size asked for.
                if sys.getrefcount(bufs[i]) == _FREE and need <= bufs[i].nbytes <= 2 * need:
                    raw = bufs[i]
                    self.reused += 1
                    if self.poison is not None:
                        raw.fill(self.poison)
                    return raw
            self.allocated += 1
            raw = np.empty(need, dtype=np.uint8)
            if self.poison is not None:
                raw.fill(self.poison)
            # Kept when it fits (free buffers leaving for it); larger than the limit: not kept.
            if need <= self.limit and self.trim(self.limit - need) + need <= self.limit:
                bufs.append(raw)
            return raw

    def trim(self, target: int) -> int:
        """With the lock held: free buffers leave, oldest first, until at most ``target``
        bytes are kept (or none is free); returns the bytes kept."""
        bufs = self.bufs
        held = sum(b.nbytes for b in bufs)
        i = 0
        while held > target and i < len(bufs):
            if sys.getrefcount(bufs[i]) == _FREE:
                held -= bufs[i].nbytes
                del bufs[i]
            else:
                i += 1
        return held

    def after_fork(self) -> None:
        self.lock = threading.Lock()  # a thread of the parent may have held it


_POOL = _Pool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.after_fork)


def pooled_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)``, cache-line aligned; from the pool when it is large.

    The contents are undefined (those of an earlier output when reused): callers write every
    element.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < POOL_FROM or dtype.hasobject or _POOL.limit == 0:
        return aligned_empty(shape, dtype)
    return aligned_in(_POOL.take(nbytes), shape, dtype, nbytes)


def set_output_pool_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of large output buffers (from 8 MiB each) for reuse, per process.

    ``read_crops`` and reads of large selections without ``out=`` then return arrays whose
    memory was already mapped by an earlier output the caller has dropped (the kernel need
    not zero fresh pages). Buffers the caller still holds are never reused. ``0`` turns the
    pool off (every output a fresh array); free buffers beyond a lower limit are released.
    Default: 256 MiB.
    """
    n = int(nbytes)
    if n < 0:
        raise ValueError(f"output pool limit must be >= 0, got {nbytes}")
    with _POOL.lock:
        _POOL.limit = n
        _POOL.trim(n)
        if n == 0:
            _POOL.bufs.clear()  # buffers still in use stay with their arrays


def get_output_pool_limit() -> int:
    """The most bytes of output buffers kept for reuse (see :func:`set_output_pool_limit`)."""
    return _POOL.limit


def output_pool_info() -> dict[str, int]:
    """The output pool: ``limit`` and ``held`` (bytes), ``buffers``, ``free`` (buffers no
    array uses), ``reused`` and ``allocated`` (outputs since the process started)."""
    with _POOL.lock:
        bufs = _POOL.bufs
        free = sum(1 for i in range(len(bufs)) if sys.getrefcount(bufs[i]) == _FREE)
        return {
            "limit": _POOL.limit,
            "held": sum(b.nbytes for b in bufs),
            "buffers": len(bufs),
            "free": free,
            "reused": _POOL.reused,
            "allocated": _POOL.allocated,
        }
