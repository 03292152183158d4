"""Starting each timed round with cold CPU caches (the chunk files stay in the page cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CacheEvictor", "largest_cache_bytes"]

DEFAULT_CACHE_BYTES = 32 << 20


def largest_cache_bytes() -> int:
    """The largest CPU cache of CPU 0 as sysfs reports it (32 MiB where unknown)."""
    best = 0
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        digits = text[:-1] if unit > 1 else text
        if digits.isdigit():
            best = max(best, int(digits) * unit)
    return best or DEFAULT_CACHE_BYTES


class CacheEvictor:
    """Reads a buffer of twice the largest CPU cache, which pushes everything else out of it.

    Called before every timed round of every reader, so that each round finds the crops'
    chunk bytes in memory (the page cache), not in the CPU caches where the previous round or
    the decode-bound measurement left them, and all readers and the bound start alike. The
    buffer is only read: no dirty lines are left for the round to write back.
    """

    def __init__(self, nbytes: int | None = None) -> None:
        size = max(2 * largest_cache_bytes(), 64 << 20) if nbytes is None else nbytes
        self._buffer = np.ones(size // 8, dtype=np.uint64)

    def __call__(self) -> None:
        self._buffer.sum()
