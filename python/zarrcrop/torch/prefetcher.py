"""The reading side of a :class:`~zarrcrop.torch.CropLoader`: the ring of batch buffers, the
background thread that reads batches into it, and the iterator that hands them out."""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._output import aligned_empty
from .dataset import SINGLE, CropDataset, Sample, to_native
from .geometry import SamplePlan, apply_flips

if TYPE_CHECKING:
    from .loader import CropLoader

__all__ = ["THREAD_NAME", "LoaderIterator", "RingPool"]

#: The name of the background thread of an iterating CropLoader.
THREAD_NAME = "zarrcrop-CropLoader"


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


class RingPool:
    """A loader's spare ring, kept between epochs: a fresh iterator reuses it (allocating and
    faulting in ``prefetch + 2`` batches of buffers costs as much as reading a batch) and goes
    on writing at the slot after the last one written, so the previous epoch's last batches
    stay valid as long as a batch is documented to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: tuple[tuple[Any, ...], _Ring, int] | None = None

    def take(self, key: tuple[Any, ...]) -> tuple[_Ring, int] | None:
        """The spare ring made for ``key`` (dataset, batch size, slots, pinning) and its next
        slot, or None."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is None or spare[0] != key:
            return None
        return spare[1], spare[2]

    def give(self, key: tuple[Any, ...], ring: _Ring, next_slot: int) -> None:
        with self._lock:
            self._spare = (key, ring, next_slot)


class _State:
    """What the background thread shares with the iterator (never the iterator itself, so the
    iterator can be garbage collected and its finalizer stop the thread)."""

    def __init__(self, prefetch: int) -> None:
        self.stop = threading.Event()
        self.free = threading.Semaphore(prefetch)
        self.results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.written = 0  # batches written into the ring (the thread's count)


def _produce(
    state: _State,
    dataset: CropDataset,
    ring: _Ring,
    batches: list[np.ndarray],
    epoch: int,
    first_slot: int,
) -> None:
    """The background thread: read ``batches`` into the ring's slots in turn from
    ``first_slot``, a slot once the iterator has freed one, and report each batch (or the end,
    or an error) on the queue."""
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
            slot = (first_slot + b) % slots
            state.written = b + 1
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


def _shutdown(
    state: _State,
    thread: threading.Thread,
    pool: RingPool,
    key: tuple[Any, ...],
    ring: _Ring,
    first_slot: int,
) -> None:
    state.stop.set()
    if thread is not threading.current_thread() and thread.is_alive():
        thread.join(timeout=30.0)
    if not thread.is_alive():  # nothing writes into the ring any more: the next epoch's
        pool.give(key, ring, (first_slot + state.written) % len(ring.arrays))


class LoaderIterator(Iterator[Sample]):
    """One epoch of a :class:`CropLoader` (from where it stands); stops its background thread
    when exhausted, closed, or garbage collected. ``len()`` is the batches still to come."""

    def __init__(
        self, loader: CropLoader, batches: list[np.ndarray], epoch: int, token: int
    ) -> None:
        # Nothing refers back to the iterator (the progress is told by token), so it can be
        # garbage collected and its finalizer stop the thread.
        self._dataset = loader.dataset
        self._progress = loader._progress  # moved as batches are handed out
        self._token = token
        self._yielded = 0
        self._copy = loader.copy
        self._remaining = len(batches)
        key = (id(loader.dataset), loader.batch_size, loader.prefetch + 2, loader.pin_memory)
        spare = loader._rings.take(key)
        if spare is None:
            slots = loader.prefetch + 2
            spare = (_Ring(loader.dataset, loader.batch_size, slots, loader.pin_memory), 0)
        self._ring, first_slot = spare
        self._state = _State(loader.prefetch)
        self._thread = threading.Thread(
            target=_produce,
            args=(self._state, loader.dataset, self._ring, batches, epoch, first_slot),
            name=THREAD_NAME,
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(
            self, _shutdown, self._state, self._thread, loader._rings, key, self._ring,
            first_slot,
        )  # fmt: skip
        self._done = False

    def __len__(self) -> int:
        return self._remaining

    def __iter__(self) -> LoaderIterator:
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
            self._progress.finish(self._token)
            self.close()
            raise StopIteration
        if kind == "error":
            self.close()
            raise value
        slot, n = value
        self._remaining -= 1
        self._yielded += 1
        self._progress.advance(self._token, self._yielded)
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
