"""Validation of caller-provided output buffers (numpy, torch, memoryview, DLPack, ...)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_output_array"]


def _to_numpy(out: Any) -> np.ndarray:
    if isinstance(out, np.ndarray):
        return out
    module = type(out).__module__
    if module.startswith("torch"):
        device = getattr(out, "device", None)
        if device is not None and getattr(device, "type", "cpu") != "cpu":
            raise ValueError(f"out must be a CPU tensor, got a tensor on {device}")
        try:
            return out.detach().numpy()  # shares memory with the tensor
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"out: cannot view this tensor as a numpy array ({exc})") from exc
    if hasattr(out, "__array_interface__") or hasattr(out, "__array_struct__"):
        return np.asarray(out)
    try:
        memoryview(out)
    except TypeError:
        pass
    else:
        return np.asarray(out)
    if hasattr(out, "__dlpack__"):
        return np.from_dlpack(out)
    raise ValueError(
        f"out must be a writable buffer (numpy array, torch tensor, memoryview, ...), "
        f"got {type(out).__name__}"
    )


def as_output_array(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Return a numpy view of ``out`` after checking it can receive the result in place."""
    arr = _to_numpy(out)
    problems = []
    if arr.dtype != dtype:
        problems.append(f"dtype {arr.dtype} (expected {dtype})")
    if tuple(arr.shape) != tuple(shape):
        problems.append(f"shape {tuple(arr.shape)} (expected {tuple(shape)})")
    if not arr.flags.c_contiguous:
        problems.append("a non-C-contiguous layout (expected C-contiguous)")
    if not arr.flags.writeable:
        problems.append("read-only memory (expected writable)")
    if problems:
        raise ValueError(
            f"out cannot receive the result in place: it has {', '.join(problems)}; "
            f"zarrcrop never copies into a temporary behind your back"
        )
    return arr
