"""CropLoader: batches of a CropDataset read in-process by a background thread."""

from __future__ import annotations

import math
import queue
import threading
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .._api import set_num_threads
from .._output import aligned_empty
from .dataset import SINGLE, CropDataset, Sample, to_native
from .geometry import SamplePlan, apply_flips

__all__ = ["CropLoader"]

#: The name of the background thread of an iterating CropLoader.
THREAD_NAME = "zarrcrop-CropLoader"


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
    """The background thread: read ``batches`` into the ring's slots in turn, a slot once the
    iterator has freed one, and report each batch (or the end, or an error) on the queue."""
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
                target = to_native(target)
                if dataset.flips:
                    apply_flips(target, plan)
            state.results.put(("batch", (slot, n)))
        state.results.put(("end", None))
    except BaseException as exc:  # re-raised in the training loop
        state.results.put(("error", exc))


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
            name=THREAD_NAME,
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
            return batch[SINGLE]
        return batch

    def close(self) -> None:
        """Stop the background thread (also done at the end, on errors, and by gc)."""
        self._done = True
        self._finalizer()
