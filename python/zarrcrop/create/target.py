"""The output directory: what may already be there, and opening its root group.

``create_dataset`` writes into an empty directory, a blank zarr group, or a dataset of its own
(to resume it); anything else is refused unless ``overwrite=True``. An output that overlaps
the input images is always refused, before anything is deleted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, cast

import zarr
import zarr.storage

from .lock import LOCK_FILE
from .meta import ATTR
from .planning import ArrayPlan

__all__ = ["check_target", "dataset_path", "open_root", "refuse_inputs_in_output"]


def dataset_path(path: Any) -> str | os.PathLike[str]:
    """``path``, or the directory of a zarr group (``zarr.Group``, ``CropGroup``) on disk."""
    if isinstance(path, (str, os.PathLike)):
        return path
    group = getattr(path, "zarr", path)  # a CropGroup's zarr.Group
    store = getattr(group, "store", None)
    if not isinstance(group, zarr.Group) or not isinstance(store, zarr.storage.LocalStore):
        raise TypeError(f"path must be a directory (str or PathLike), got {type(path).__name__}")
    where = os.path.join(str(store.root), *filter(None, str(group.path).split("/")))
    if store.read_only:
        raise ValueError(
            f"the group at {where} was opened read-only (mode='r'), and create_dataset writes: "
            "pass its path, or a group opened with mode='r+' (or 'a')"
        )
    return where


def refuse_inputs_in_output(root: str, plans: list[ArrayPlan]) -> None:
    """Refuse an output that is, contains or lies inside an input image file or folder, before
    anything is written or deleted (overwrite=True would delete the images it reads)."""
    outs = {os.path.abspath(root), os.path.realpath(root)}
    for plan in plans:
        images = plan.source.images
        if images is None:
            continue
        given = [*([images.folder] if images.folder else []), *images.paths]
        for path in given:
            for inp in {os.path.abspath(path), os.path.realpath(path)}:
                for out in outs:
                    how = _overlap(inp, out)
                    if how is None:
                        continue
                    raise ValueError(
                        f"the output {root} {how} the input {path} of array {plan.name!r}; "
                        "nothing was written or deleted: choose an output outside the inputs"
                    )


def check_target(location: Path, overwrite: bool) -> None:
    """Refuse (or with ``overwrite`` clear) what is at ``location`` that the lock cannot guard:
    a file, or a non-empty directory that is not a dataset (no lock file is made in it)."""
    if location.is_symlink() and not location.exists():
        raise FileExistsError(f"{location} is a broken symbolic link")
    if location.exists() and not location.is_dir():
        if not overwrite:
            raise FileExistsError(
                f"{location} exists and is not a directory; pass overwrite=True to replace it"
            )
        location.unlink()
        return
    if overwrite or not location.is_dir():
        return
    names = os.listdir(location)  # one snapshot: a writer makes its lock file before the rest
    if names and LOCK_FILE not in names and not _is_zarrcrop_group(location):
        raise FileExistsError(
            f"{location} exists and is not a zarrcrop dataset; pass overwrite=True to replace it"
        )


def open_root(root: str, *, overwrite: bool, resume: bool, zarr_format: int) -> zarr.Group:
    """Open (or create) the root group; the caller made the directory and holds its lock."""
    location = Path(root)
    if overwrite or _blank_group_only(location):
        _empty_directory(location)
    if any(entry.name != LOCK_FILE for entry in location.iterdir()):
        return _reopen_dataset(location, resume=resume, zarr_format=zarr_format)
    # "a", not "w": "w" would delete the directory, lock file included (and "w-" sees it)
    group = zarr.open_group(store=root, mode="a", zarr_format=cast(Any, zarr_format))
    group.attrs[ATTR] = {"complete": False}
    return group


def _reopen_dataset(location: Path, *, resume: bool, zarr_format: int) -> zarr.Group:
    """The root group of the dataset at ``location``, to resume it; FileExistsError when it is
    not one of ours, is of another zarr format, or ``resume`` is off."""
    try:
        group = zarr.open_group(store=os.fspath(location), mode="r+")
    except Exception:
        group = None
    if group is None or not isinstance(group.attrs.get(ATTR), dict):
        raise FileExistsError(
            f"{location} exists and is not a zarrcrop dataset; pass overwrite=True to replace it"
        )
    fmt = int(group.metadata.zarr_format)
    if not resume or fmt != zarr_format:
        raise FileExistsError(
            f"{location} already holds a dataset; pass overwrite=True to replace it"
            + ("" if resume else " (resume=False)")
        )
    return group


def _empty_directory(location: Path) -> None:
    """Delete everything in ``location`` but the lock file (held by this process)."""
    for entry in location.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _is_zarrcrop_group(location: Path) -> bool:
    """A zarrcrop dataset, or a blank zarr group (no members, no attributes) to fill."""
    try:
        group = zarr.open_group(store=os.fspath(location), mode="r")
    except Exception:
        return False
    return isinstance(group.attrs.get(ATTR), dict) or _blank_group_only(location)


def _blank_group_only(location: Path) -> bool:
    """A zarr group without members or attributes (e.g. just made by open_group(mode="w"))."""
    names = {entry.name for entry in location.iterdir()} - {LOCK_FILE}
    if not names or not names <= {".zgroup", ".zattrs", "zarr.json"}:
        return False
    try:
        return not dict(zarr.open_group(store=os.fspath(location), mode="r").attrs)
    except Exception:
        return False


def _overlap(inp: str, out: str) -> str | None:
    """How the output path ``out`` overlaps the input path ``inp`` ("is", "contains", "lies
    inside"), or None."""
    if inp == out:
        return "is"
    if _inside(inp, out):
        return "contains"
    if _inside(out, inp):
        return "lies inside"
    return None


def _inside(child: str, parent: str) -> bool:
    return child.startswith(parent.rstrip(os.sep) + os.sep)
