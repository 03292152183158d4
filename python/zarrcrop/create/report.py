"""What ``create_dataset`` returns: a report per array of what it wrote."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ArrayReport", "CreateReport"]


@dataclass
class ArrayReport:
    """What ``create_dataset`` did for one array."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None = None
    source_dtype: str | None = None
    #: Largest absolute error of a lossy dtype conversion over all frames, those written by an
    #: interrupted earlier run included (None: no lossy conversion).
    max_abs_error: float | None = None
    frames_written: int = 0
    frames_skipped: int = 0


@dataclass
class CreateReport:
    """What ``create_dataset`` did: one :class:`ArrayReport` per array (levels included)."""

    path: str
    zarr_format: int
    arrays: dict[str, ArrayReport] = field(default_factory=dict)

    @property
    def frames_written(self) -> int:
        """Frames written by this run, over all arrays."""
        return sum(a.frames_written for a in self.arrays.values())

    @property
    def frames_skipped(self) -> int:
        """Frames found already written (an interrupted run's), over all arrays."""
        return sum(a.frames_skipped for a in self.arrays.values())
