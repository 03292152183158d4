"""PyTorch integration: aligned multi-resolution random-crop datasets and an in-process loader.

``import zarrcrop`` never imports torch; importing this module does (``import zarrcrop.torch``).

- :class:`CropDataset`: a map-style ``torch.utils.data.Dataset`` of random crops of one array
  or of several arrays at different resolutions, aligned on the same scene, optionally with
  ``frames`` consecutive frames per sample and random flips. Works under
  ``torch.utils.data.DataLoader`` with worker processes (fork or spawn, persistent or not) and
  with ``DistributedSampler``.
- :class:`CropLoader`: an in-process batch loader without worker processes. It reads each batch
  with one :meth:`zarrcrop.CropArray.read_crops` call per array (on zarrcrop's C++ thread pool,
  GIL released) into reused, optionally pinned, buffers and prefetches the next batches in a
  background thread while the training step runs.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import threading
import types
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import context as _mp_context
from typing import Any, TypeAlias

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

from ._api import get_num_threads, set_num_threads
from ._api import open as _open_array
from ._output import aligned_empty
from .array import CropArray

__all__ = ["CropDataset", "CropLoader", "SamplePlan"]

ArrayLike: TypeAlias = "CropArray | zarr.Array[Any]"
Sample = torch.Tensor | dict[str, torch.Tensor]

_SINGLE = "__single__"  # the name of the one array of a dataset built from a bare array


class _ArraySource:
    """A picklable handle on one array: the zarr.Array plus how zarrcrop opened it.

    The native reader (``CropArray``) cannot be pickled; it is reopened lazily in each process
    (spawned DataLoader workers), while forked processes keep using the inherited one.
    """

    def __init__(self, array: ArrayLike) -> None:
        if isinstance(array, CropArray):
            self.zarr_array: zarr.Array[Any] = array.zarr
            self.strict: bool = array.strict
            self.cache_bytes: int = int(array.cache_info()["capacity"])
            self._array: CropArray | None = array
        elif isinstance(array, zarr.Array):
            self.zarr_array = array
            self.strict = False
            self.cache_bytes = 0
            self._array = None
        else:
            raise TypeError(
                f"arrays must be zarrcrop.CropArray or zarr.Array, got {type(array).__name__}"
            )
        self.shape: tuple[int, ...] = tuple(int(n) for n in self.zarr_array.shape)

    @property
    def array(self) -> CropArray:
        if self._array is None:
            self._array = _open_array(
                self.zarr_array, strict=self.strict, cache_bytes=self.cache_bytes
            )
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state


@dataclass(frozen=True)
class SamplePlan:
    """Where the samples of a batch of indices are read, in reference-array pixels.

    ``t``: first frame, ``y``/``x``: top-left corner in the reference array, ``hflip``/
    ``vflip``: whether the sample is flipped left-right / upside-down (all of shape (N,)).
    """

    t: np.ndarray
    y: np.ndarray
    x: np.ndarray
    hflip: np.ndarray
    vflip: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])


class CropDataset(Dataset[Sample]):
    """Random crops of one array, or aligned crops of several arrays at different resolutions.

    Parameters
    ----------
    arrays:
        One array, or a dict ``name -> array``; each a :class:`zarrcrop.CropArray` or a
        ``zarr.Array`` (opened with :func:`zarrcrop.open`), shaped (T, C, H, W). All must have
        the same T; C and dtype may differ. The first array is the *reference*.
    crop:
        Crop size ``h`` or ``(h, w)`` in pixels of the reference array. Every other array gets
        the crop of the same scene: its size and position are scaled by the array's (H, W)
        relative to the reference (a 960 crop of a 2160x3840 ``gt`` pairs with the 320 crop of
        a 720x1280 ``lr``). Each array's H and W must be an integer multiple or an integer
        fraction of the reference's, and the crop must map to whole pixels in every array;
        crop positions are snapped (to multiples of the largest downscale factor) so that every
        array's crop starts on a whole pixel. Anything else raises ``ValueError``.
    frames:
        ``k`` consecutive frames per sample; samples are then (k, C, h, w) instead of (C, h, w).
    length:
        ``len(dataset)``. Default: ``(T - k + 1) * max(1, (H // h) * (W // w))``, that is as
        many samples as there are non-overlapping crops in every window of ``k`` frames (one
        epoch covers the data about once).
    seed:
        Sample ``i`` of epoch ``e`` is drawn from ``np.random.default_rng([seed, e, i])``, so
        the same (seed, epoch, i) always gives the same crop; :meth:`set_epoch` changes it.
    flips:
        Randomly flip each sample left-right and/or upside-down (each with probability 1/2),
        the same way for every array of the sample.
    worker_threads:
        Size of zarrcrop's thread pool inside each DataLoader worker process. Default: the
        parent's pool size divided by ``num_workers`` (at least 1), which avoids running
        ``num_workers`` full-size pools on the same cores. Ignored outside workers.

    ``ds[i]`` returns a tensor for a bare array, else a dict ``name -> tensor``; tensors own
    fresh memory (they are not shared with the dataset). The dataset pickles (for spawned
    workers) by keeping the underlying ``zarr.Array`` and reopening it lazily.
    """

    def __init__(
        self,
        arrays: ArrayLike | Mapping[str, ArrayLike],
        crop: int | Sequence[int],
        *,
        frames: int = 1,
        length: int | None = None,
        seed: int = 0,
        flips: bool = False,
        worker_threads: int | None = None,
    ) -> None:
        if isinstance(arrays, Mapping):
            if not arrays:
                raise ValueError("arrays must not be empty")
            self._single = False
            items = [(str(name), arr) for name, arr in arrays.items()]
        else:
            self._single = True
            items = [(_SINGLE, arrays)]
        self._sources: dict[str, _ArraySource] = {name: _ArraySource(a) for name, a in items}
        self.names: tuple[str, ...] = tuple(self._sources)

        if isinstance(crop, (int, np.integer)):
            crop_hw = (int(crop), int(crop))
        else:
            crop_hw = tuple(int(n) for n in crop)  # type: ignore[assignment]
            if len(crop_hw) != 2:
                raise ValueError(f"crop must be an int or (h, w), got {crop!r}")
        self.crop: tuple[int, int] = crop_hw
        if min(self.crop) < 1:
            raise ValueError(f"crop must be positive, got {self.crop}")
        self.frames = int(frames)
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.seed = int(seed)
        self.flips = bool(flips)
        self._epoch: Any = _shared_epoch(0)
        if worker_threads is not None and int(worker_threads) < 1:
            raise ValueError(f"worker_threads must be >= 1, got {worker_threads}")
        self.worker_threads = None if worker_threads is None else int(worker_threads)
        self._parent_threads = get_num_threads()
        self._configured_pid = os.getpid()

        ref_name = self.names[0]
        shapes = {name: src.shape for name, src in self._sources.items()}
        for name, shape in shapes.items():
            if len(shape) != 4:
                raise ValueError(f"array {name!r} must have 4 dimensions (T, C, H, W), got {shape}")
        frames_total, _, ref_h, ref_w = shapes[ref_name]
        h, w = self.crop
        if h > ref_h or w > ref_w:
            raise ValueError(
                f"crop {self.crop} does not fit in the reference array {ref_name!r} "
                f"of shape {shapes[ref_name]}"
            )
        if self.frames > frames_total:
            raise ValueError(f"frames={self.frames} exceeds the {frames_total} frames of the data")
        # Per array and axis: (numerator, denominator) of its size relative to the reference,
        # one of them 1.
        self._scale: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
        snap_y, snap_x = 1, 1
        for name, shape in shapes.items():
            if shape[0] != frames_total:
                raise ValueError(
                    f"array {name!r} has {shape[0]} frames but the reference {ref_name!r} has "
                    f"{frames_total}"
                )
            sy = _ratio(name, "height", shape[2], ref_h)
            sx = _ratio(name, "width", shape[3], ref_w)
            for (_num, den), size, axis in ((sy, h, "height"), (sx, w, "width")):
                if size % den:
                    raise ValueError(
                        f"crop {axis} {size} is not a multiple of {den}, the factor between "
                        f"the reference {ref_name!r} and {name!r}: the crop of {name!r} would "
                        "not be whole pixels"
                    )
            snap_y = math.lcm(snap_y, sy[1])
            snap_x = math.lcm(snap_x, sx[1])
            self._scale[name] = (sy, sx)
        self._snap = (snap_y, snap_x)
        self._positions = (
            (ref_h - h) // snap_y + 1,
            (ref_w - w) // snap_x + 1,
        )
        self._t_positions = frames_total - self.frames + 1
        self.crop_shapes: dict[str, tuple[int, int, int, int]] = {}
        for name, shape in shapes.items():
            (ny, dy), (nx, dx) = self._scale[name]
            self.crop_shapes[name] = (self.frames, shape[1], h * ny // dy, w * nx // dx)
        if length is None:
            length = self._t_positions * max(1, (ref_h // h) * (ref_w // w))
        if int(length) < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.length = int(length)

    # -- metadata -------------------------------------------------------------------------

    @property
    def single(self) -> bool:
        """True when the dataset was built from one bare array (samples are tensors)."""
        return self._single

    @property
    def arrays(self) -> dict[str, CropArray]:
        """The arrays, opened with zarrcrop (a bare array is named ``"__single__"``)."""
        return {name: src.array for name, src in self._sources.items()}

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each array's tensor in one sample: (C, h, w), or (k, C, h, w) with frames."""
        return {name: self._sample_shape(name) for name in self.names}

    def _sample_shape(self, name: str) -> tuple[int, ...]:
        shape = self.crop_shapes[name]
        return shape if self.frames > 1 else shape[1:]

    def __len__(self) -> int:
        return self.length

    @property
    def epoch(self) -> int:
        """The epoch whose draws ``ds[i]`` returns (see :meth:`set_epoch`)."""
        return int(self._epoch.value)

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._epoch.value = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of epoch ``epoch`` (sample i of epoch e is the same for the same seed).

        The epoch lives in shared memory that DataLoader worker processes inherit (fork or
        spawn), so calling ``set_epoch(e)`` before iterating over the DataLoader for epoch
        ``e`` also reaches persistent workers. (A dataset copied with ``pickle`` outside of
        process creation gets its own epoch.)
        """
        self.epoch = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if _mp_context.get_spawning_popen() is None:  # a plain copy: the epoch's value only
            state["_epoch"] = int(self._epoch.value)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["_epoch"], int):
            state["_epoch"] = _shared_epoch(state["_epoch"])
        self.__dict__.update(state)

    # -- sampling -------------------------------------------------------------------------

    def sample_plan(self, indices: Any, epoch: int | None = None) -> SamplePlan:
        """The frame, position and flips of samples ``indices`` (ints) in ``epoch``."""
        epoch = self.epoch if epoch is None else int(epoch)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = idx.shape[0]
        t = np.empty(n, dtype=np.int64)
        y = np.empty(n, dtype=np.int64)
        x = np.empty(n, dtype=np.int64)
        hflip = np.zeros(n, dtype=bool)
        vflip = np.zeros(n, dtype=bool)
        ny, nx = self._positions
        for j, i in enumerate(idx.tolist()):
            if i < 0 or i >= self.length:
                raise IndexError(f"sample index {i} out of range for length {self.length}")
            rng = np.random.default_rng([self.seed, epoch, i])
            draw = rng.integers(0, (self._t_positions, ny, nx, 2, 2))
            t[j], y[j], x[j] = draw[0], draw[1] * self._snap[0], draw[2] * self._snap[1]
            if self.flips:
                hflip[j], vflip[j] = bool(draw[3]), bool(draw[4])
        return SamplePlan(t=t, y=y, x=x, hflip=hflip, vflip=vflip)

    def plan_starts(self, plan: SamplePlan) -> dict[str, np.ndarray]:
        """Each array's ``read_crops`` starts (N, 4) int64 for ``plan``."""
        starts: dict[str, np.ndarray] = {}
        for name in self.names:
            (ny, dy), (nx, dx) = self._scale[name]
            s = np.zeros((len(plan), 4), dtype=np.int64)
            s[:, 0] = plan.t
            s[:, 2] = plan.y * ny // dy
            s[:, 3] = plan.x * nx // dx
            starts[name] = s
        return starts

    def sample_starts(self, indices: Any, epoch: int | None = None) -> dict[str, np.ndarray]:
        """Each array's ``read_crops`` starts (N, 4) int64 for samples ``indices``.

        With ``crop_shapes[name]`` as the crop shape, ``read_crops`` then reads exactly the
        samples (before flips) of ``indices``; a bare array is named ``"__single__"``.
        """
        return self.plan_starts(self.sample_plan(indices, epoch))

    # -- reading --------------------------------------------------------------------------

    def _configure_process(self) -> None:
        pid = os.getpid()
        if pid == self._configured_pid:
            return
        self._configured_pid = pid
        info = torch.utils.data.get_worker_info()
        if info is None:
            return
        threads = self.worker_threads
        if threads is None:
            threads = max(1, self._parent_threads // max(1, info.num_workers))
        set_num_threads(threads)

    def __getitem__(self, index: int) -> Sample:
        self._configure_process()
        i = int(index)
        if i < 0:
            i += self.length
        plan = self.sample_plan([i])
        starts = self.plan_starts(plan)
        hflip, vflip = bool(plan.hflip[0]), bool(plan.vflip[0])
        out: dict[str, torch.Tensor] = {}
        for name in self.names:
            array = self._sources[name].array
            k, c, h, w = self.crop_shapes[name]
            buf = aligned_empty((k, c, h, w), array.dtype)
            t, _, y, x = starts[name][0].tolist()
            if hflip or vflip:
                # Negative-step selections: the flipped crop is read directly, no extra copy.
                array.read(
                    (slice(t, t + k), slice(None), _span(y, h, vflip), _span(x, w, hflip)),
                    out=buf,
                )
            else:
                array.read_crops(starts[name], (k, c, h, w), out=buf[None])
            buf = _to_native(buf)
            out[name] = torch.from_numpy(buf if self.frames > 1 else buf[0])
        if self._single:
            return out[_SINGLE]
        return out

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """Samples ``indices``, read with one ``read_crops`` call per array.

        ``torch.utils.data.DataLoader`` calls this (instead of ``__getitem__`` per index) to
        fetch a whole batch, so a DataLoader worker reads its batch on zarrcrop's pool and
        decodes a chunk shared by several crops once. Equal to ``[ds[i] for i in indices]``;
        the samples are views of one batch buffer.
        """
        self._configure_process()
        idx = [int(i) + self.length if int(i) < 0 else int(i) for i in indices]
        plan = self.sample_plan(idx)
        starts = self.plan_starts(plan)
        n = len(idx)
        per_array: dict[str, torch.Tensor] = {}
        for name in self.names:
            array = self._sources[name].array
            buf = aligned_empty((n, *self.crop_shapes[name]), array.dtype)
            array.read_crops(starts[name], self.crop_shapes[name], out=buf)
            buf = _to_native(buf)
            if self.flips:
                _apply_flips(buf, plan)
            batch = torch.from_numpy(buf)
            if self.frames == 1:
                batch = batch.squeeze(1)
            per_array[name] = batch
        if self._single:
            return [per_array[_SINGLE][j] for j in range(n)]
        return [{name: per_array[name][j] for name in self.names} for j in range(n)]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {s}" for n, s in self.sample_shapes().items())
        return (
            f"<zarrcrop.torch.CropDataset len={self.length} crop={self.crop} "
            f"frames={self.frames} seed={self.seed} epoch={self.epoch} [{shapes}]>"
        )


def _shared_epoch(value: int) -> Any:
    """An int64 in shared memory (``.value``) that child processes inherit, or a plain holder
    where shared memory is not available."""
    try:
        return multiprocessing.RawValue("q", value)
    except OSError:  # pragma: no cover - no usable shared memory
        return types.SimpleNamespace(value=value)


def _ratio(name: str, axis: str, size: int, ref: int) -> tuple[int, int]:
    """(num, den) with size / ref == num / den and one of them 1, else ValueError."""
    if size >= ref and size % ref == 0:
        return size // ref, 1
    if size < ref and size > 0 and ref % size == 0:
        return 1, ref // size
    raise ValueError(
        f"the {axis} of array {name!r} ({size}) is not an integer multiple or fraction of the "
        f"reference's ({ref})"
    )


def _to_native(buf: np.ndarray) -> np.ndarray:
    """``buf`` in native byte order: non-native data is byte-swapped in place (torch has no
    big-endian dtypes), and the result is a view of the same memory."""
    if buf.dtype.isnative:
        return buf
    buf.byteswap(inplace=True)
    return buf.view(buf.dtype.newbyteorder("="))


def _span(start: int, size: int, reverse: bool) -> slice:
    if not reverse:
        return slice(start, start + size)
    return slice(start + size - 1, start - 1 if start > 0 else None, -1)


# ---------------------------------------------------------------------------------------------
# CropLoader


class CropLoader:
    """Batches of a :class:`CropDataset` read in-process, without worker processes.

    Each batch is read with one ``read_crops`` call per array (zarrcrop's C++ thread pool, GIL
    released) into preallocated buffers, while a background thread keeps ``prefetch`` batches
    ahead of the training loop. Batches are dicts of (B, C, h, w) tensors (or (B, k, C, h, w)
    with frames), or one tensor for a dataset of a bare array: the same as
    ``torch.utils.data.default_collate`` of the dataset's samples for the same indices.

    **Buffer reuse**: a yielded batch is a view of the loader's buffers (a ring of
    ``prefetch + 2`` batches per array). It stays valid while the next batch is in use (so an
    asynchronous ``.to(device, non_blocking=True)`` copy of it may still be running) and is
    overwritten after that: keep a batch longer with ``.clone()``, or pass ``copy=True``.

    Parameters
    ----------
    dataset:
        The :class:`CropDataset` (its seed, crops and flips; the epoch is the loader's).
    batch_size:
        Samples per batch.
    shuffle:
        Visit the sample indices in a random order (seeded by ``seed`` and the epoch) instead
        of 0, 1, 2, ...
    prefetch:
        Batches read ahead of the one the training loop holds (>= 1). Besides, before
        reading a batch the loader asks the kernel to read ahead what the next batches need
        that is not cached (:meth:`zarrcrop.CropArray.prefetch`: the headers of the batch
        after next, the blocks of the next one): with data larger than RAM the disk works
        while a batch decodes.
    pin_memory:
        Allocate the buffers in pinned (page-locked) memory for fast host-to-GPU copies. Only
        when CUDA is available; otherwise a warning is issued and ordinary memory is used.
    drop_last:
        Drop the last incomplete batch of the epoch.
    seed:
        Seed of the shuffle (default: the dataset's seed).
    epoch:
        The first epoch; :meth:`set_epoch` changes it. The epoch selects both the shuffle and
        the dataset's draws. Like ``DistributedSampler``, the epoch does not advance by
        itself: call ``set_epoch(e)`` before each epoch.
    rank, world_size:
        Distributed training: the epoch's indices are padded (by repeating the first ones) to
        a multiple of ``world_size`` and rank ``r`` gets every ``world_size``-th index starting
        at ``r``, exactly as ``torch.utils.data.DistributedSampler``: disjoint across ranks.
    num_threads:
        If given, ``zarrcrop.set_num_threads(num_threads)`` (process-wide) when iteration
        starts.
    copy:
        Yield batches that own their memory (a copy of the buffers) instead of views.
    """

    def __init__(
        self,
        dataset: CropDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        prefetch: int = 2,
        pin_memory: bool = False,
        drop_last: bool = True,
        seed: int | None = None,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_threads: int | None = None,
        copy: bool = False,
    ) -> None:
        if not isinstance(dataset, CropDataset):
            raise TypeError(f"dataset must be a CropDataset, got {type(dataset).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(prefetch) < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world={world_size}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.prefetch = int(prefetch)
        self.drop_last = bool(drop_last)
        self.seed = dataset.seed if seed is None else int(seed)
        self.epoch = int(epoch)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.copy = bool(copy)
        self.pin_memory = bool(pin_memory)
        if self.pin_memory and not torch.cuda.is_available():
            warnings.warn(
                "CropLoader(pin_memory=True): CUDA is not available, using ordinary memory",
                RuntimeWarning,
                stacklevel=2,
            )
            self.pin_memory = False

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration (shuffle order and the dataset's draws)."""
        self.epoch = int(epoch)

    def _per_rank(self) -> int:
        return math.ceil(len(self.dataset) / self.world_size)

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's sample indices for ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            order = np.arange(n, dtype=np.int64)
        total = self._per_rank() * self.world_size
        if total > n and n > 0:
            order = np.concatenate([order, np.resize(order, total - n)])
        return np.asarray(order[self.rank : total : self.world_size], dtype=np.int64)

    def batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """The sample indices of each batch this rank yields in ``epoch``."""
        idx = self.indices(epoch)
        out = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if out and self.drop_last and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __iter__(self) -> Iterator[Sample]:
        if self.num_threads is not None:
            set_num_threads(self.num_threads)
        return _LoaderIterator(self, self.batches(), self.epoch)

    def __repr__(self) -> str:
        return (
            f"<zarrcrop.torch.CropLoader batches={len(self)} batch_size={self.batch_size} "
            f"epoch={self.epoch} rank={self.rank}/{self.world_size} prefetch={self.prefetch}>"
        )


class _Ring:
    """The preallocated batch buffers: ``slots`` batches per array."""

    def __init__(self, dataset: CropDataset, batch_size: int, slots: int, pin: bool) -> None:
        self.tensors: list[dict[str, torch.Tensor]] = []
        self.arrays: list[dict[str, np.ndarray]] = []
        dtypes = {name: arr.dtype for name, arr in dataset.arrays.items()}
        for _ in range(slots):
            tensors: dict[str, torch.Tensor] = {}
            arrays: dict[str, np.ndarray] = {}
            for name in dataset.names:
                shape = (batch_size, *dataset.crop_shapes[name])
                # Big-endian arrays are read as stored and byte-swapped in place afterwards;
                # the tensors see the same memory in native byte order.
                native = dtypes[name].newbyteorder("=")
                if pin:
                    dtype = torch.from_numpy(np.empty(0, dtype=native)).dtype
                    tensor = torch.empty(shape, dtype=dtype, pin_memory=True)
                    array = tensor.numpy().view(dtypes[name])
                else:
                    array = aligned_empty(shape, dtypes[name])
                    tensor = torch.from_numpy(array.view(native))
                if dataset.frames == 1:  # (B, 1, C, h, w) -> (B, C, h, w), a view
                    tensor = tensor.squeeze(1)
                tensors[name] = tensor
                arrays[name] = array
            self.tensors.append(tensors)
            self.arrays.append(arrays)


class _State:
    """What the background thread shares with the iterator (never the iterator itself, so the
    iterator can be garbage collected and its finalizer stop the thread)."""

    def __init__(self, prefetch: int) -> None:
        self.stop = threading.Event()
        self.free = threading.Semaphore(prefetch)
        self.results: queue.Queue[tuple[str, Any]] = queue.Queue()


def _produce(
    state: _State,
    dataset: CropDataset,
    ring: _Ring,
    batches: list[np.ndarray],
    epoch: int,
) -> None:
    arrays = dataset.arrays
    slots = len(ring.arrays)
    ahead: tuple[SamplePlan, dict[str, np.ndarray]] | None = None
    try:
        for b, idx in enumerate(batches):
            while not state.free.acquire(timeout=0.05):
                if state.stop.is_set():
                    return
            if state.stop.is_set():
                return
            slot = b % slots
            n = len(idx)
            if ahead is None:
                plan = dataset.sample_plan(idx, epoch)
                ahead = (plan, dataset.plan_starts(plan))
            plan, starts = ahead
            ahead = None
            if b + 1 < len(batches):
                # Read ahead while this batch decodes: the headers of the batch after next,
                # then the blocks of the next one (its headers were asked for a batch ago).
                next_plan = dataset.sample_plan(batches[b + 1], epoch)
                ahead = (next_plan, dataset.plan_starts(next_plan))
                later = None
                if b + 2 < len(batches):
                    later = dataset.plan_starts(dataset.sample_plan(batches[b + 2], epoch))
                for name in dataset.names:
                    if later is not None:
                        arrays[name].prefetch(later[name], dataset.crop_shapes[name])
                    arrays[name].prefetch(ahead[1][name], dataset.crop_shapes[name])
            for name in dataset.names:
                target = ring.arrays[slot][name][:n]
                arrays[name].read_crops(starts[name], dataset.crop_shapes[name], out=target)
                target = _to_native(target)
                if dataset.flips:
                    _apply_flips(target, plan)
            state.results.put(("batch", (slot, n)))
        state.results.put(("end", None))
    except BaseException as exc:  # re-raised in the training loop
        state.results.put(("error", exc))


def _apply_flips(batch: np.ndarray, plan: SamplePlan) -> None:
    """Flip the crops of ``batch`` (N, ..., h, w) in place as ``plan`` says (NumPy: torch
    cannot flip every dtype, e.g. uint16; NumPy handles the overlapping copy)."""
    for i in range(len(plan)):
        hflip, vflip = bool(plan.hflip[i]), bool(plan.vflip[i])
        if hflip or vflip:
            crop = batch[i]
            crop[...] = crop[..., :: -1 if vflip else 1, :: -1 if hflip else 1]


def _shutdown(state: _State, thread: threading.Thread) -> None:
    state.stop.set()
    if thread is not threading.current_thread() and thread.is_alive():
        thread.join(timeout=30.0)


class _LoaderIterator(Iterator[Sample]):
    """One epoch of a :class:`CropLoader`; stops its background thread when exhausted,
    closed, or garbage collected."""

    def __init__(self, loader: CropLoader, batches: list[np.ndarray], epoch: int) -> None:
        self._dataset = loader.dataset
        self._copy = loader.copy
        self._remaining = len(batches)
        self._ring = _Ring(
            loader.dataset, loader.batch_size, loader.prefetch + 2, loader.pin_memory
        )
        self._state = _State(loader.prefetch)
        self._thread = threading.Thread(
            target=_produce,
            args=(self._state, loader.dataset, self._ring, batches, epoch),
            name="zarrcrop-CropLoader",
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shutdown, self._state, self._thread)
        self._done = False

    def __len__(self) -> int:
        return self._remaining

    def __iter__(self) -> _LoaderIterator:
        return self

    def __next__(self) -> Sample:
        if self._done:
            raise StopIteration
        while True:
            try:
                kind, value = self._state.results.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._state.results.empty():
                    self.close()
                    raise RuntimeError("the CropLoader thread stopped unexpectedly") from None
        if kind == "end":
            self.close()
            raise StopIteration
        if kind == "error":
            self.close()
            raise value
        slot, n = value
        self._remaining -= 1
        self._state.free.release()
        tensors = self._ring.tensors[slot]
        batch: dict[str, torch.Tensor] = {name: tensors[name][:n] for name in self._dataset.names}
        if self._copy:
            batch = {name: t.clone() for name, t in batch.items()}
        if self._dataset.single:
            return batch[_SINGLE]
        return batch

    def close(self) -> None:
        """Stop the background thread (also done at the end, on errors, and by gc)."""
        self._done = True
        self._finalizer()
