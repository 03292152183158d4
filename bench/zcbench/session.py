"""Settings of one benchmark session (from the pytest command line) and shared results."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["MEMORY_KEY", "Settings", "default_threads"]

#: Where test_memory leaves its measurements for the benchmark JSON (config.stash).
MEMORY_KEY = pytest.StashKey[dict[str, Any]]()


def default_threads() -> int:
    """All the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    rounds: int
    per_round: int
    threads: int
    data_root: Path
    decode_reps: int
    memory_reads: int
    memory_checkpoint: int

    def to_json(self) -> dict[str, Any]:
        info = asdict(self)
        info["data_root"] = os.fspath(self.data_root)
        return info
