"""Exceptions raised by zarrcrop."""

from __future__ import annotations

from ._core import ChunkError

__all__ = ["ChunkError", "DatasetLockedError", "FallbackError", "WriteCheckError"]


class FallbackError(RuntimeError):
    """Strict mode: a read would have gone through zarr-python instead of the native reader."""


class DatasetLockedError(RuntimeError):
    """Another process is writing the dataset (it holds the dataset's lock file)."""

    def __init__(self, path: str, lock_file: str, holder: str) -> None:
        self.path = path
        self.lock_file = lock_file
        self.holder = holder
        super().__init__(
            f"{path} is being written by another process ({holder}; lock file {lock_file}); "
            "wait for it to finish (or pass wait=SECONDS) instead of running two conversions "
            "of the same dataset"
        )


class WriteCheckError(RuntimeError):
    """Frames read back after writing differ from what was written (the unit is not marked done)."""


# Defined in the extension; present it under the public package name in tracebacks.
ChunkError.__module__ = "zarrcrop"
