"""The readers compared by the benchmarks, each reading rounds of crops of one array.

Every reader is opened with the same thread count where the library lets one set it. A round
is an array of crop starts, shape (K, 4), rows (t, 0, y, x); each crop is
``arr[t, :, y:y+s, x:x+s]``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ReaderUnavailable",
    "RoundReader",
    "open_reader",
    "tensorstore_context",
    "zarrs_config",
]


class ReaderUnavailable(Exception):
    """The reader cannot take part (library missing, or it would not read natively)."""


class RoundReader(ABC):
    """Reads one round of crops; ``crop`` reads one crop as (channels, s, s) for checking."""

    name: str

    def __init__(self, size: int) -> None:
        self.size = size

    @abstractmethod
    def crop(self, t: int, y: int, x: int) -> np.ndarray: ...

    def read_round(self, starts: np.ndarray, starts_list: list[list[int]]) -> None:
        """Read every crop of the round (``starts_list`` is ``starts.tolist()``)."""
        for t, _, y, x in starts_list:
            self.crop(t, y, x)


class ZarrcropLoop(RoundReader):
    name = "zarrcrop"

    def __init__(self, path: Path, size: int) -> None:
        super().__init__(size)
        import zarrcrop

        self.array = zarrcrop.open(path, strict=True)

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        s = self.size
        return np.asarray(self.array[t, :, y : y + s, x : x + s])


class ZarrcropBatch(ZarrcropLoop):
    """``read_crops`` into a reused (K, 1, C, s, s) buffer, as a data loader would."""

    name = "zarrcrop-batch"

    def __init__(self, path: Path, size: int) -> None:
        super().__init__(path, size)
        self.crop_shape = (1, self.array.shape[1], size, size)
        self.out: np.ndarray | None = None

    def read_round(self, starts: np.ndarray, starts_list: list[list[int]]) -> None:
        if self.out is None or self.out.shape[0] != starts.shape[0]:
            # The first batch allocates the buffer (zarrcrop aligns it to a cache line, as
            # torch's allocator would), the next ones reuse it.
            self.out = self.array.read_crops(starts, self.crop_shape)
            return
        self.array.read_crops(starts, self.crop_shape, out=self.out)


class ZarrPythonLoop(RoundReader):
    name = "zarr-python"

    def __init__(self, path: Path, size: int) -> None:
        super().__init__(size)
        import zarr

        self.array: Any = zarr.open_array(os.fspath(path), mode="r")

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        s = self.size
        return np.asarray(self.array[t, :, y : y + s, x : x + s])


def zarrs_config(strict: bool = False) -> dict[str, Any]:
    """zarr.config settings selecting the zarrs codec pipeline (see the zarrs README)."""
    return {
        "codec_pipeline.path": "zarrs.ZarrsCodecPipeline",
        "codec_pipeline.strict": strict,
    }


class ZarrsLoop(RoundReader):
    """zarr-python with the zarrs (Rust) codec pipeline.

    zarrs 0.2.3 cannot handle an integer index that drops an axis (``arr[t, :, ...]`` raises
    UnsupportedVIndexingError internally) and silently falls back to zarr-python's own
    pipeline for it. The frame is therefore selected with a length-1 slice, which zarrs reads
    natively; :meth:`check_native` proves it with a strict pipeline.
    """

    name = "zarrs"

    def __init__(self, path: Path, size: int) -> None:
        super().__init__(size)
        try:
            import zarrs  # noqa: F401
        except ImportError as exc:
            raise ReaderUnavailable(f"zarrs is not importable: {exc}") from exc
        import zarr

        self.path = path
        # The pipeline (and its thread count, from threading.max_workers) is fixed when the
        # array is opened, so the config only needs to be in effect here.
        with zarr.config.set(zarrs_config()):
            self.array: Any = zarr.open_array(os.fspath(path), mode="r")
        pipeline = self.array._async_array.codec_pipeline
        if (
            type(pipeline).__name__ != "ZarrsCodecPipeline"
            or getattr(pipeline, "impl", None) is None
        ):
            raise ReaderUnavailable(f"zarrs pipeline not active for {path}: {pipeline!r}")

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        s = self.size
        data: np.ndarray = np.asarray(self.array[t : t + 1, :, y : y + s, x : x + s])
        return data.reshape(data.shape[1:])

    def check_native(self, t: int, y: int, x: int) -> None:
        """Read one crop with a strict zarrs pipeline: raises where zarrs would fall back."""
        import zarr

        with zarr.config.set(zarrs_config(strict=True)):
            strict_array: Any = zarr.open_array(os.fspath(self.path), mode="r")
            s = self.size
            try:
                strict_array[t : t + 1, :, y : y + s, x : x + s]
            except Exception as exc:
                raise ReaderUnavailable(
                    f"zarrs would fall back to zarr-python's pipeline: {exc!r}"
                ) from exc


def tensorstore_context(threads: int) -> dict[str, Any]:
    """No chunk cache; decode and file I/O concurrency limited to ``threads``."""
    return {
        "cache_pool": {"total_bytes_limit": 0},
        "data_copy_concurrency": {"limit": threads},
        "file_io_concurrency": {"limit": threads},
    }


class TensorstoreLoop(RoundReader):
    name = "tensorstore"

    def __init__(self, path: Path, size: int, zarr_format: int, threads: int) -> None:
        super().__init__(size)
        try:
            import tensorstore
        except ImportError as exc:
            raise ReaderUnavailable(f"tensorstore is not importable: {exc}") from exc
        spec = {
            "driver": "zarr" if zarr_format == 2 else "zarr3",
            "kvstore": {"driver": "file", "path": os.fspath(path)},
            "context": tensorstore_context(threads),
        }
        self.array: Any = tensorstore.open(spec, read=True).result()

    def crop(self, t: int, y: int, x: int) -> np.ndarray:
        s = self.size
        return np.asarray(self.array[t, :, y : y + s, x : x + s].read().result())


def open_reader(name: str, path: Path, size: int, zarr_format: int, threads: int) -> RoundReader:
    """Open ``path`` with reader ``name`` (one of zcbench.cases.READERS)."""
    if name == "zarrcrop":
        return ZarrcropLoop(path, size)
    if name == "zarrcrop-batch":
        return ZarrcropBatch(path, size)
    if name == "zarr-python":
        return ZarrPythonLoop(path, size)
    if name == "zarrs":
        return ZarrsLoop(path, size)
    if name == "tensorstore":
        return TensorstoreLoop(path, size, zarr_format, threads)
    raise ValueError(f"unknown reader {name!r}")
