"""Runners: who writes the units of work, local threads or Dask tasks.

Both share :func:`_write_units`, the loop over the units: it skips the units already marked
done, grows arrays of unknown length, keeps a bounded number of units in flight and records
each finished unit in the report and the progress bar. A runner only supplies the pool.
"""

from __future__ import annotations

import os
import queue
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

import zarr

from .markers import unit_done
from .planning import ArrayPlan
from .report import ArrayReport, CreateReport
from .units import iter_units, write_unit

__all__ = ["progress_bar", "run_dask", "run_threads"]


def progress_bar(total: int | None, enabled: bool, desc: str) -> Any:
    """A tqdm progress bar counting frames on stderr; None when disabled or without tqdm."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr)


def run_threads(
    root: str,
    plans: list[ArrayPlan],
    report: CreateReport,
    bar: Any,
    group: zarr.Group,
    workers: int | None,
) -> None:
    """Write the units in ``workers`` threads (default: the CPUs available)."""
    n = max(1, int(workers or _cpu_count()))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="zarrcrop-create") as executor:
        _write_units(_ThreadPool(executor, window=2 * n), root, plans, report, bar, group)


def run_dask(
    client: Any,
    root: str,
    plans: list[ArrayPlan],
    report: CreateReport,
    bar: Any,
    group: zarr.Group,
) -> None:
    """Write the units as Dask tasks on ``client`` (a Client, or a scheduler address)."""
    with _dask_client(client) as (dask_client, as_completed):
        _write_units(_DaskPool(dask_client, as_completed), root, plans, report, bar, group)


class _Pool(Protocol):
    """Where units run: submit one, take the next finished one."""

    #: Units in flight at most (submitted, not yet taken back by next_done).
    window: int

    def submit(self, plan: ArrayPlan, unit: int, args: tuple[Any, ...]) -> Any:
        """Start ``write_unit(*args)`` (unit ``unit`` of ``plan``); its future."""
        ...

    def next_done(self) -> Any:
        """A finished future not returned before (waits for one)."""
        ...


def _write_units(
    pool: _Pool,
    root: str,
    plans: list[ArrayPlan],
    report: CreateReport,
    bar: Any,
    group: zarr.Group,
) -> None:
    """Write every unit of ``plans`` not marked done yet in ``pool``, counting each unit in
    ``report`` (written or skipped) and ``bar``."""
    in_flight: dict[Any, tuple[ArrayReport, int]] = {}
    for plan in plans:
        rep = report.arrays[plan.name]
        for unit, t0, frames in iter_units(plan):
            if plan.source.length is None:  # unknown length: the arrays grow as frames arrive
                _grow(group, plan, t0 + len(frames))
            if unit_done(root, plan.name, unit):
                rep.frames_skipped += len(frames)
                if bar is not None:
                    bar.update(len(frames))
                continue
            args = (root, plan.name, t0, frames, str(plan.dtype), plan.lossy, plan.derived, unit)
            in_flight[pool.submit(plan, unit, args)] = (rep, len(frames))
            while len(in_flight) > pool.window:  # bounds the frames held in memory
                _record(pool.next_done(), in_flight, bar)
    while in_flight:
        _record(pool.next_done(), in_flight, bar)


def _record(future: Any, in_flight: dict[Any, tuple[ArrayReport, int]], bar: Any) -> None:
    """Count a finished unit (raising its error, if it failed) in its report and ``bar``."""
    err = future.result()
    rep, count = in_flight.pop(future)
    rep.frames_written += count
    if err is not None:
        rep.max_abs_error = max(rep.max_abs_error or 0.0, err)
    if bar is not None:
        bar.update(count)


def _grow(group: zarr.Group, plan: ArrayPlan, length: int) -> None:
    """Resize ``plan``'s array and levels to at least ``length`` frames."""
    for name in plan.array_names:
        arr: Any = group[name]
        if arr.shape[0] < length:
            arr.resize((length, *arr.shape[1:]))


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _ThreadPool:
    """Units run by a thread pool; finished futures arrive through a queue."""

    def __init__(self, executor: ThreadPoolExecutor, window: int) -> None:
        self.window = window
        self._executor = executor
        self._done: queue.SimpleQueue[Future[float | None]] = queue.SimpleQueue()

    def submit(self, plan: ArrayPlan, unit: int, args: tuple[Any, ...]) -> Any:
        future = self._executor.submit(write_unit, *args)
        future.add_done_callback(self._done.put)
        return future

    def next_done(self) -> Any:
        return self._done.get()


class _DaskPool:
    """Units run as Dask tasks, at most two per worker in flight (four at least)."""

    def __init__(self, client: Any, as_completed: Any) -> None:
        self.window = max(4, 2 * len(client.scheduler_info().get("workers", {})) or 4)
        self._client = client
        self._finished = as_completed()

    def submit(self, plan: ArrayPlan, unit: int, args: tuple[Any, ...]) -> Any:
        future = self._client.submit(
            write_unit,
            *args,
            key=f"zarrcrop-create-{plan.name}-{unit}-{id(plan)}",
            pure=False,
        )
        self._finished.add(future)
        return future

    def next_done(self) -> Any:
        return next(self._finished)


@contextmanager
def _dask_client(client: Any) -> Iterator[tuple[Any, Any]]:
    """``client``, or a Client connected to the address ``client`` (closed on exit); with
    dask.distributed's ``as_completed``."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "client= needs dask.distributed: pip install 'dask[distributed]'"
        ) from exc
    own = isinstance(client, str)
    connected = Client(client) if own else client  # type: ignore[no-untyped-call,unused-ignore]
    try:
        yield connected, as_completed
    finally:
        if own:
            connected.close()
