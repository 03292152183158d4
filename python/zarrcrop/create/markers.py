"""Done-unit markers: how an interrupted conversion knows which frames are already written.

After a unit of work (a frame, or a shard of frames) is written and read back, a file named
after the unit's index is made in ``ARRAY/.zarrcrop-done/``; it holds the unit's largest dtype
conversion error (empty when the conversion is not lossy). A resumed conversion skips marked
units; a finished one removes the folder.
"""

from __future__ import annotations

import os
import shutil

__all__ = ["DONE_DIR", "clear_markers", "done_dir", "mark_done", "recorded_error", "unit_done"]

#: The folder of done markers inside each array's directory.
DONE_DIR = ".zarrcrop-done"


def done_dir(root: str, name: str) -> str:
    """The marker folder of array ``name`` of the dataset at ``root``."""
    return os.path.join(root, *name.split("/"), DONE_DIR)


def unit_done(root: str, name: str, unit: int) -> bool:
    """Whether unit ``unit`` of array ``name`` was written (and checked) by some run."""
    return os.path.exists(os.path.join(done_dir(root, name), str(unit)))


def mark_done(root: str, name: str, unit: int, error: float | None) -> None:
    """Mark unit ``unit`` of array ``name`` written, recording its conversion error."""
    folder = done_dir(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, str(unit)), "w") as marker:
        marker.write("" if error is None else repr(error))


def recorded_error(root: str, name: str) -> float:
    """The largest conversion error recorded in the markers of ``name`` (0.0 if none)."""
    worst = 0.0
    folder = done_dir(root, name)
    if not os.path.isdir(folder):
        return worst
    for entry in os.listdir(folder):
        with open(os.path.join(folder, entry)) as marker:
            text = marker.read().strip()
        if text:
            worst = max(worst, float(text))
    return worst


def clear_markers(root: str, name: str) -> None:
    """Remove the markers of ``name`` (a finished array, or one created anew)."""
    shutil.rmtree(done_dir(root, name), ignore_errors=True)
