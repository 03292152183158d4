"""Starting each timed round with cold CPU caches (the chunk files stay in the page cache)."""

from __future__ import annotations

import numpy as np
from zarrcrop import _core

__all__ = ["CacheEvictor", "largest_cache_bytes"]


def largest_cache_bytes() -> int:
    """The largest CPU cache, as zarrcrop sees it (sysfs; 32 MiB where unknown): outputs
    larger than this are the ones zarrcrop writes with non-temporal stores."""
    return int(_core._testing.stream_threshold())


class CacheEvictor:
    """Reads a buffer of twice the largest CPU cache, which pushes everything else out of it.

    Called before every timed round of every reader, so that each round finds the crops'
    chunk bytes in memory (the page cache), not in the CPU caches where the previous round or
    the decode-bound measurement left them, and all readers and the bound start alike. The
    buffer is only read: no dirty lines are left for the round to write back.
    """

    def __init__(self) -> None:
        size = max(2 * largest_cache_bytes(), 64 << 20)
        self._buffer = np.ones(size // 8, dtype=np.uint64)

    def __call__(self) -> None:
        self._buffer.sum()
