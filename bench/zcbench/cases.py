"""Benchmark cases (data set, zarr format, crop size) and their fixed crop positions."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .data import Content, DatasetSpec, dataset_spec

__all__ = ["CASES", "MODES", "READERS", "Case", "crop_batches"]

#: Readers, in the order they run within a case. ``zarrcrop-batch`` reads each round with one
#: ``read_crops`` call; every other reader reads the round's crops one at a time.
READERS = ("zarrcrop", "zarrcrop-batch", "zarr-python", "tensorstore", "zarrs")
#: How each reader reads a round: a loop of single crops, or one batch call.
MODES = {reader: ("batch" if reader == "zarrcrop-batch" else "loop") for reader in READERS}


@dataclass(frozen=True)
class Case:
    """Square crops of ``size`` pixels, all channels, one frame, from one dataset."""

    content: Content
    zarr_format: int
    size: int
    layout: str = "blosc"  # see DatasetSpec.layout

    @property
    def id(self) -> str:
        suffix = "" if self.layout == "blosc" else self.layout
        return f"{self.content}-v{self.zarr_format}{suffix}-{self.size}"

    @property
    def spec(self) -> DatasetSpec:
        return dataset_spec(self.content, self.zarr_format, layout=self.layout)

    @property
    def crop_shape(self) -> tuple[int, int, int, int]:
        """The crop as read by ``read_crops``: (1, channels, size, size)."""
        return (1, self.spec.shape[1], self.size, self.size)

    def __str__(self) -> str:
        return self.id


CASES: tuple[Case, ...] = (
    *(
        Case(content, zarr_format, size)
        for content in ("photo", "random")
        for zarr_format in (2, 3)
        for size in (960, 512, 256)
    ),
    Case("flow", 2, 320),
    Case("flow", 3, 320),
    Case("photo", 3, 960, "sharded"),
    Case("photo", 3, 512, "sharded"),
    Case("photo", 3, 960, "zstd"),
)


def crop_batches(case: Case, batches: int, per_batch: int) -> np.ndarray:
    """Random crop starts, shape (batches, per_batch, 4), rows (t, 0, y, x).

    The generator is seeded from the case id (not the zarr format: v2 and v3 of the same
    content read the same crops), so every reader of a case, in every run, reads the same
    crops in the same order.
    """
    frames, _, height, width = case.spec.shape
    if case.size > min(height, width):
        raise ValueError(f"crop size {case.size} does not fit in {height}x{width}")
    seed = zlib.crc32(f"{case.content}-{case.size}".encode())
    rng = np.random.default_rng(seed)
    n = batches * per_batch
    starts = np.zeros((n, 4), dtype=np.int64)
    starts[:, 0] = rng.integers(0, frames, size=n)
    starts[:, 2] = rng.integers(0, height - case.size + 1, size=n)
    starts[:, 3] = rng.integers(0, width - case.size + 1, size=n)
    return starts.reshape(batches, per_batch, 4)
