"""CropLoader: batches of a CropDataset read in-process by a background thread."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .._api import set_num_threads
from .dataset import CropDataset, Sample
from .order import Shuffle
from .prefetcher import THREAD_NAME, LoaderIterator, RingPool
from .progress import EpochProgress

__all__ = ["THREAD_NAME", "CropLoader"]


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
    overwritten after that: keep a batch longer with ``.clone()``, or pass ``copy=True``. The
    ring is kept from one epoch to the next (the next epoch goes on at the slot after the last
    one written, so the rule holds across epochs too).

    **Resuming**: :meth:`state_dict` is a small JSON-serialisable dict (the epoch and the
    position in its global order); a loader given it by :meth:`load_state_dict` yields exactly
    the batches the saved one would have yielded next, also with another ``world_size``.

    Parameters
    ----------
    dataset:
        The :class:`CropDataset` (its seed, crops and flips; the epoch is the loader's).
    batch_size:
        Samples per batch (per rank).
    shuffle:
        The order of each epoch's samples (its *global order*, the same for every number of
        ranks): ``True`` or ``"random"``, a random permutation seeded by ``seed`` and the
        epoch; ``False`` or ``"none"``, 0, 1, 2, ...; ``"window"``, locality-aware: a random
        order in which every batch is drawn from one window of ``window`` consecutive frames
        (as long as the window holds a batch's worth of samples), so that the crops of a
        batch share chunk files, which ``read_crops`` then reads and decodes once. Every
        sample is still seen once per epoch.
    window:
        Frames per window of ``shuffle="window"`` (default: the reference array's frames
        per chunk file, :attr:`CropDataset.file_frames`).
    prefetch:
        Batches read ahead of the one the training loop holds (>= 1). Besides, before
        reading a batch the loader asks the kernel to read ahead what the next batches need
        that is not cached (:meth:`zarrcrop.CropArray.prefetch`: the headers of the batch
        after next, the blocks of the next one): with data larger than RAM the disk works
        while a batch decodes. On an object store the next batches' requests are made then,
        their bytes held in memory for the reads.
    pin_memory:
        Allocate the buffers in pinned (page-locked) memory for fast host-to-GPU copies. Only
        when CUDA is available; otherwise a warning is issued and ordinary memory is used.
    drop_last:
        Drop the last step of the epoch when it is short (fewer than ``world_size *
        batch_size`` samples left) instead of padding it.
    seed:
        Seed of the shuffle (default: the dataset's seed).
    epoch:
        The first epoch; :meth:`set_epoch` changes it. The epoch selects both the shuffle and
        the dataset's draws. Like ``DistributedSampler``, the epoch does not advance by
        itself: call ``set_epoch(e)`` before each epoch.
    rank, world_size:
        Distributed training. The global order is consumed in steps of ``world_size *
        batch_size`` samples; at each step rank ``r`` takes the ``r``-th slice of
        ``batch_size``, so the ranks' batches are disjoint and the ranks advance in step. A
        short last step is padded with the first samples of the epoch to a multiple of
        ``world_size`` and shared out in equal slices (``drop_last`` drops it).
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
        shuffle: bool | Shuffle = True,
        window: int | None = None,
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
        if int(prefetch) < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.dataset = dataset
        self._progress = EpochProgress(
            dataset,
            batch_size,
            shuffle=shuffle,
            window=window,
            drop_last=drop_last,
            seed=dataset.seed if seed is None else int(seed),
            epoch=epoch,
            rank=rank,
            world_size=world_size,
        )
        self.prefetch = int(prefetch)
        self._rings = RingPool()  # the batch buffers, kept from one epoch to the next
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

    # The settings of the order are read-only: a saved state's position refers to them.
    @property
    def batch_size(self) -> int:
        """Samples per batch (per rank)."""
        return self._progress.batch_size

    @property
    def shuffle(self) -> Shuffle:
        """The order of the epochs: ``"none"``, ``"random"`` or ``"window"``."""
        return self._progress.shuffle

    @property
    def window(self) -> int:
        """Frames per window of ``shuffle="window"`` (0 for the other orders)."""
        return self._progress.window

    @property
    def drop_last(self) -> bool:
        """Whether a short last step is dropped instead of padded."""
        return self._progress.drop_last

    @property
    def seed(self) -> int:
        """Seed of the order."""
        return self._progress.seed

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self._progress.rank

    @property
    def world_size(self) -> int:
        """Number of ranks sharing each epoch."""
        return self._progress.world_size

    @property
    def epoch(self) -> int:
        """The epoch of the next (or current) iteration (setting it is :meth:`set_epoch`)."""
        return self._progress.epoch

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._progress.set_epoch(epoch)

    @property
    def position(self) -> int:
        """Samples of the epoch's global order consumed by all ranks together: by the batches
        yielded so far (the position of a loaded state before iterating; the epoch's length
        once it is over)."""
        return self._progress.position

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration (shuffle order and the dataset's draws).

        Another epoch than the current one starts at its beginning; the current one keeps a
        position restored by :meth:`load_state_dict`, so that ``set_epoch(e)`` at the top of
        the epoch loop does not undo a resume.
        """
        self._progress.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: a small JSON-serialisable dict (format version, seed, order,
        epoch, position, world size and what identifies the dataset).

        Every rank saves the same dict (it does not depend on the rank), so one rank's is
        enough to resume all of them. Save it with the model's state after the training step
        on the batch last yielded: the loader resumes with the next batch.
        """
        return self._progress.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` (from :meth:`state_dict`, possibly of another ``world_size``
        or ``rank``): the next iteration continues the state's epoch from its position.

        ``ValueError`` naming the field when ``state`` is not such a dict, has a newer format
        version, or comes from another dataset (length, arrays, dtypes, crop, frames, flips,
        seed) or another order (seed, shuffle, window, batch size for ``"window"``).
        """
        self._progress.load_state_dict(state)

    def __len__(self) -> int:
        """Batches of this rank in a whole epoch (a resumed iteration yields fewer)."""
        return self._progress.count()

    def indices(self, epoch: int | None = None, *, position: int = 0) -> np.ndarray:
        """This rank's sample indices for ``epoch`` (default: the current one), in order, from
        ``position`` of the epoch's global order."""
        batches = self.batches(epoch, position=position)
        return np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)

    def batches(self, epoch: int | None = None, *, position: int = 0) -> list[np.ndarray]:
        """The sample indices of each batch this rank yields in ``epoch`` from ``position``."""
        return self._progress.batches(epoch, position)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The global order of ``epoch`` (all ranks' samples, before padding), read-only."""
        return self._progress.order(epoch)

    def __iter__(self) -> Iterator[Sample]:
        if self.num_threads is not None:
            set_num_threads(self.num_threads)
        token, epoch, batches = self._progress.begin()
        return LoaderIterator(self, batches, epoch, token)

    def __repr__(self) -> str:
        return (
            f"<zarrcrop.torch.CropLoader batches={len(self)} batch_size={self.batch_size} "
            f"shuffle={self.shuffle} epoch={self.epoch} position={self.position} "
            f"rank={self.rank}/{self.world_size} prefetch={self.prefetch}>"
        )
