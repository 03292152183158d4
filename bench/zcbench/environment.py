"""What a benchmark run ran on: machine and package versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

__all__ = ["machine_info", "versions"]

PACKAGES = (
    "numpy",
    "zarr",
    "numcodecs",
    "blosc2",
    "tensorstore",
    "zarrs",
    "zarrcrop",
    "scikit-image",
    "pytest-benchmark",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def machine_info() -> dict[str, object]:
    """CPU model, core counts, memory, kernel."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": _cpu_model(),
        "cores_online": os.cpu_count(),
        "cores_usable": usable,
        "memory": _memory_total(),
        "kernel": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
    }


def versions() -> dict[str, str]:
    """Python, the compared packages, and the C-Blosc2 zarrcrop was built with."""
    found: dict[str, str] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    try:
        from zarrcrop import _core

        found["C-Blosc2 (zarrcrop)"] = str(_core.blosc_version)
    except ImportError:
        found["C-Blosc2 (zarrcrop)"] = "unavailable"
    return found
