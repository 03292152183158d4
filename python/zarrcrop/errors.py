"""Exceptions raised by zarrcrop."""

from __future__ import annotations

from ._core import ChunkError

__all__ = ["ChunkError", "FallbackError"]


class FallbackError(RuntimeError):
    """Strict mode: a read would have gone through zarr-python instead of the native reader."""


# Defined in the extension; present it under the public package name in tracebacks.
ChunkError.__module__ = "zarrcrop"
