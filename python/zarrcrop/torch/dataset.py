"""CropDataset: a map-style ``torch.utils.data.Dataset`` of aligned random crops."""

from __future__ import annotations

import multiprocessing
import os
import types
from collections.abc import Mapping, Sequence
from multiprocessing import context as _mp_context
from typing import Any, TypeAlias

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

from .._api import get_num_threads, set_num_threads
from .._api import open as _open_array
from .._output_pool import pooled_empty
from ..array import CropArray
from .geometry import CropGeometry, SamplePlan, apply_flips, crop_size, flip_span

__all__ = ["CropDataset", "Sample"]

ArrayLike: TypeAlias = "CropArray | zarr.Array[Any]"
#: One sample (or batch): a tensor for a dataset of a bare array, else a dict name -> tensor.
Sample = torch.Tensor | dict[str, torch.Tensor]

SINGLE = "__single__"  # the name of the one array of a dataset built from a bare array


class _ArraySource:
    """One array of a dataset: a :class:`CropArray`, or a ``zarr.Array`` that is opened with
    :func:`zarrcrop.open` (not strict, no cache) on first use.

    Pickling (for spawned DataLoader workers) needs nothing here: a ``CropArray`` pickles
    itself (``CropArray.__reduce__``: the zarr.Array and its strict and cache settings; the
    native reader is rebuilt on the other side), and forked processes keep the inherited one.
    """

    def __init__(self, array: ArrayLike) -> None:
        if isinstance(array, CropArray):
            self._array: CropArray | None = array
            self._zarr: zarr.Array[Any] = array.zarr
        elif isinstance(array, zarr.Array):
            self._array = None
            self._zarr = array
        else:
            raise TypeError(
                f"arrays must be zarrcrop.CropArray or zarr.Array, got {type(array).__name__}"
            )
        self.shape: tuple[int, ...] = tuple(int(n) for n in self._zarr.shape)
        self.dtype: np.dtype[Any] = np.dtype(self._zarr.dtype)
        # The T extent of one chunk file: a shard's when sharded, else a chunk's.
        shards = getattr(self._zarr, "shards", None)
        self.file_frames = int((shards or self._zarr.chunks)[0])

    @property
    def array(self) -> CropArray:
        """The array opened with zarrcrop."""
        if self._array is None:
            self._array = _open_array(self._zarr, strict=False)
        return self._array


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
    workers): each array is pickled as its ``zarr.Array`` and reopened on the other side.
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
            items = [(SINGLE, arrays)]
        self._sources: dict[str, _ArraySource] = {name: _ArraySource(a) for name, a in items}
        self.names: tuple[str, ...] = tuple(self._sources)

        self.crop: tuple[int, int] = crop_size(crop)
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

        shapes = {name: src.shape for name, src in self._sources.items()}
        self._geometry = CropGeometry.from_shapes(shapes, self.crop, self.frames)
        self.crop_shapes: dict[str, tuple[int, int, int, int]] = self._geometry.crop_shapes
        if length is None:
            length = self._geometry.default_length
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

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each array's shape (T, C, H, W), in the order of :attr:`names`."""
        return {name: src.shape for name, src in self._sources.items()}

    @property
    def dtypes(self) -> dict[str, np.dtype[Any]]:
        """Each array's dtype as stored (samples come in native byte order)."""
        return {name: src.dtype for name, src in self._sources.items()}

    @property
    def file_frames(self) -> int:
        """Frames per chunk file of the reference array: the T extent of its shards when it is
        sharded, else of its chunks (the default window of ``shuffle="window"``)."""
        return self._sources[self.names[0]].file_frames

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
        return self._geometry.sample_plan(
            indices, seed=self.seed, epoch=epoch, length=self.length, flips=self.flips
        )

    def plan_starts(self, plan: SamplePlan) -> dict[str, np.ndarray]:
        """Each array's ``read_crops`` starts (N, 4) int64 for ``plan``."""
        return self._geometry.plan_starts(plan)

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
            buf = pooled_empty((k, c, h, w), array.dtype)
            t, _, y, x = starts[name][0].tolist()
            if hflip or vflip:
                # Negative-step selections: the flipped crop is read directly, no extra copy.
                array.read(
                    (slice(t, t + k), slice(None), flip_span(y, h, vflip), flip_span(x, w, hflip)),
                    out=buf,
                )
            else:
                array.read_crops(starts[name], (k, c, h, w), out=buf[None])
            buf = to_native(buf)
            out[name] = torch.from_numpy(buf if self.frames > 1 else buf[0])
        if self._single:
            return out[SINGLE]
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
            buf = pooled_empty((n, *self.crop_shapes[name]), array.dtype)
            array.read_crops(starts[name], self.crop_shapes[name], out=buf)
            buf = to_native(buf)
            if self.flips:
                apply_flips(buf, plan)
            batch = torch.from_numpy(buf)
            if self.frames == 1:
                batch = batch.squeeze(1)
            per_array[name] = batch
        if self._single:
            return [per_array[SINGLE][j] for j in range(n)]
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


def to_native(buf: np.ndarray) -> np.ndarray:
    """``buf`` in native byte order: non-native data is byte-swapped in place (torch has no
    big-endian dtypes), and the result is a view of the same memory."""
    if buf.dtype.isnative:
        return buf
    buf.byteswap(inplace=True)
    return buf.view(buf.dtype.newbyteorder("="))
