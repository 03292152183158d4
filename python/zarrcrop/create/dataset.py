"""``create_dataset``: plan, lock the output, create the arrays, write the units, finish.

Each step is a function of its own module; this one runs them in order:

1. check the options and plan every array (:mod:`.planning`), resolve the compressor;
2. refuse outputs that overlap the inputs or hold something else (:mod:`.target`);
3. take the dataset lock (:mod:`.lock`) and open or create the root group;
4. create or reopen the arrays (:mod:`.arrays`), or return at once if a finished dataset of
   the same layout is there;
5. write the units not marked done yet, in threads or on Dask (:mod:`.runners`);
6. record conversion errors, drop the markers and mark the dataset complete.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zarr

from ..presets import resolve_compressor
from .arrays import create_arrays
from .lock import acquire_lock, release_lock
from .markers import clear_markers, recorded_error
from .meta import ATTR, read_meta
from .planning import ArrayPlan, check_options, plan_arrays
from .report import CreateReport
from .runners import progress_bar, run_dask, run_threads
from .target import check_target, dataset_path, open_root, refuse_inputs_in_output

__all__ = ["create_dataset"]


def create_dataset(
    path: str | os.PathLike[str],
    arrays: Mapping[str, Any],
    *,
    crop_size: int | None = None,
    compressor: Any = "zstd",
    zarr_format: int = 2,
    shards: int | None = None,
    levels: Sequence[int] | None = None,
    level_source: str = "gt",
    lossless: bool = False,
    dtypes: Mapping[str, Any] | None = None,
    blocksize: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    client: Any = None,
    overwrite: bool = False,
    resume: bool = True,
    attrs: Mapping[str, Any] | None = None,
    wait: float = 0.0,
) -> CreateReport:
    """Write a dataset laid out for fast crops: a root group of (T, C, H, W) arrays.

    Parameters
    ----------
    path:
        Directory of the new dataset (a zarr group).
    arrays:
        Array name (may contain "/", e.g. ``"lr/720p/flow"``) to its data: a numpy array
        (T, C, H, W) or (T, H, W); an iterable or generator of (C, H, W) or (H, W) frames (read
        one at a time, never held whole); or image files: a glob pattern, a directory or a
        list of paths (sorted by name, decoded with Pillow, TIFF with tifffile, to (C, H, W);
        RGB images give (T, 3, H, W) uint8).
    crop_size:
        Expected crop side; chunks are ``(1, C, min(crop_size, H), min(crop_size, W))``.
        Default 960 (the tutorial's crops).
    compressor:
        ``"zstd"`` (Blosc zstd clevel 5 bitshuffle, default), ``"lz4"`` (Blosc lz4 clevel 5
        shuffle, faster, larger), any numcodecs codec (zarr v2) or zarr codec (v3), or None.
    zarr_format:
        2 (default, the tutorial's layout) or 3.
    shards:
        Zarr v3 only: frames per shard (each shard holds whole frames, so there are few files).
    levels:
        Downscale factors, e.g. ``(2, 3)``: derive ``lr/<H>p/rgb`` from ``level_source``
        (default ``"gt"``) by area downscaling (mean over factor x factor blocks), named by
        the level's frame height: 2160x3840 frames with ``levels=(2, 3)`` give
        ``lr/1080p/rgb`` and ``lr/720p/rgb``, as in the tutorial.
    lossless:
        Refuse any lossy dtype conversion (``ValueError``).
    dtypes:
        Array name to stored dtype, e.g. ``{"flow": "float16"}``. Lossy conversions report the
        largest absolute error (in the returned report and the array's attributes).
    blocksize:
        Blosc block size in bytes for the presets (default: the preset's, 64 KiB for zstd and
        Blosc's own choice for lz4; 0 = Blosc's choice; see the README for the trade-off).
    workers:
        Writer threads (default: the CPUs available). Compression releases the GIL.
    progress:
        Show a tqdm progress bar when tqdm is installed.
    client:
        A ``dask.distributed.Client`` or a scheduler address: write one Dask task per frame
        (per shard) on the cluster instead of local threads. Workers must see ``path``.
    overwrite:
        Delete whatever is at ``path`` first.
    resume:
        If ``path`` holds an unfinished conversion with the same layout, keep the finished
        frames and write only the missing ones (the inputs must be the same). Otherwise an
        existing non-empty ``path`` raises ``FileExistsError`` unless ``overwrite``.
    attrs:
        Extra attributes for the root group.
    wait:
        Seconds to wait when another process is writing ``path`` (it holds the lock file
        ``path/.zarrcrop-lock``; a crashed holder releases it). Default 0: raise
        :class:`DatasetLockedError` naming the holder at once. After the wait the dataset is
        resumed, so a second launch of the same conversion finds it finished.

    Returns
    -------
    CreateReport
        Per array: shape, dtype, chunks, frames written and skipped, conversion error.

    Every written frame is read back before it is marked done (``WriteCheckError`` if it is
    not there, e.g. when another program changed the array). An output that is, contains or
    lies inside an input image file or folder raises ``ValueError`` before anything is touched.
    A level whose name is also given in ``arrays``, or two levels of one name (frames so small
    that both factors give the same height), raise ``ValueError``.
    """
    root = os.fspath(Path(dataset_path(path)).expanduser())
    options = check_options(
        arrays,
        wait=wait,
        zarr_format=zarr_format,
        shards=shards,
        crop_size=crop_size,
        dtypes=dtypes,
        levels=levels,
        level_source=level_source,
        blocksize=blocksize,
    )
    codec = resolve_compressor(compressor, zarr_format, blocksize)
    plans = plan_arrays(
        arrays, options, shards=shards, level_source=level_source, lossless=lossless
    )

    refuse_inputs_in_output(root, plans)
    check_target(Path(root), overwrite)
    os.makedirs(root, exist_ok=True)
    lock = acquire_lock(root, wait)  # called here: its warning's stacklevel counts on it
    try:
        group = open_root(root, overwrite=overwrite, resume=resume, zarr_format=zarr_format)
        was_complete = read_meta(group).get("complete") is True
        report, changed = create_arrays(group, root, plans, codec, zarr_format)
        unknown_length = any(plan.source.length is None for plan in plans)
        if was_complete and not changed and not unknown_length:
            return _report_finished(group, plans, report)
        group.attrs.update(_root_attrs(attrs, options.crop, plans))
        _write(root, group, plans, report, progress=progress, client=client, workers=workers)
        _finish(root, group, plans, report, progress=progress)
        return report
    finally:
        release_lock(root, lock)


def _root_attrs(
    attrs: Mapping[str, Any] | None, crop: int, plans: list[ArrayPlan]
) -> dict[str, Any]:
    """The root group's attributes: the user's, and ours (not complete yet) with the levels."""
    root_attrs = dict(attrs or {})
    root_attrs[ATTR] = {
        "complete": False,
        "layout": "TCHW",
        "crop_size": crop,
        "levels": [
            {"array": level.name, "scale": level.factor, "source": plan.name}
            for plan in plans
            for level in plan.levels
        ],
    }
    return root_attrs


def _report_finished(
    group: zarr.Group, plans: list[ArrayPlan], report: CreateReport
) -> CreateReport:
    """The report of a finished conversion of the same layout: every frame skipped."""
    for plan in plans:
        for name in plan.array_names:
            report.arrays[name].frames_skipped = plan.source.length or 0
        if plan.lossy:
            found_err = read_meta(group[plan.name]).get("max_abs_error")
            report.arrays[plan.name].max_abs_error = found_err
    return report


def _write(
    root: str,
    group: zarr.Group,
    plans: list[ArrayPlan],
    report: CreateReport,
    *,
    progress: bool,
    client: Any,
    workers: int | None,
) -> None:
    """Write the units not marked done, on Dask with ``client``, else in threads."""
    total = sum(p.source.length or 0 for p in plans) or None
    unknown_length = any(plan.source.length is None for plan in plans)
    bar = progress_bar(None if unknown_length else total, progress, "zarrcrop create")
    try:
        if client is not None:
            run_dask(client, root, plans, report, bar, group)
        else:
            run_threads(root, plans, report, bar, group, workers)
    finally:
        if bar is not None:
            bar.close()


def _finish(
    root: str, group: zarr.Group, plans: list[ArrayPlan], report: CreateReport, *, progress: bool
) -> None:
    """After the last unit: final shapes and conversion errors in the report and attributes,
    markers removed, the dataset marked complete."""
    for plan in plans:
        worst = recorded_error(root, plan.name)  # this run's units and an earlier run's
        clear_markers(root, plan.name)
        rep = report.arrays[plan.name]
        arr: Any = group[plan.name]
        rep.shape = tuple(arr.shape)
        if plan.lossy:
            rep.max_abs_error = worst
            meta = read_meta(arr)
            meta.update({"converted_from": str(plan.source.dtype), "max_abs_error": worst})
            arr.attrs[ATTR] = meta
            if progress:
                print(
                    f"zarrcrop: {plan.name}: stored {plan.source.dtype} as {plan.dtype}, "
                    f"largest absolute error {worst:.6g}",
                    file=sys.stderr,
                )
        for level in plan.levels:
            level_rep = report.arrays[level.name]
            level_rep.shape = tuple(group[level.name].shape)  # type: ignore[union-attr]
            level_rep.frames_written = rep.frames_written
            level_rep.frames_skipped = rep.frames_skipped
    meta = read_meta(group)
    meta["complete"] = True
    group.attrs[ATTR] = meta
