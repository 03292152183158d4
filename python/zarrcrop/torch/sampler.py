"""CropSampler: CropLoader's epoch order, rank shares and resumable state, as a batch sampler
for PyTorch's ``DataLoader`` (and torchdata's ``StatefulDataLoader``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from .dataset import CropDataset
from .order import Shuffle
from .progress import EpochProgress

__all__ = ["CropSampler"]


class CropSampler(Sampler[list[int]]):
    """Batches of sample indices of a :class:`CropDataset`, for
    ``DataLoader(dataset, batch_sampler=sampler)``.

    The batches are those of ``CropLoader(dataset, batch_size, ...)`` with the same arguments
    (the same global order of each epoch, the same share per rank, the same ``"window"``
    shuffling), so a ``DataLoader`` with worker processes yields the same batches as the
    in-process loader. :meth:`set_epoch` also sets the dataset's epoch (which reaches the
    workers).

    **Resuming**: :meth:`state_dict` / :meth:`load_state_dict` follow the protocol of
    torchdata's ``StatefulDataLoader``, which saves the sampler's state as of each batch it
    yields (its workers read ahead) within ``dataloader.state_dict()``; after
    ``dataloader.load_state_dict(state)`` its next iteration resumes with the next batch.
    The state is :class:`CropLoader`'s: one rank's resumes every rank, with another
    ``world_size`` too.

    With PyTorch's plain ``DataLoader``, worker processes fetch ahead of the training loop:
    :meth:`state_dict` without arguments counts the batches the sampler has handed to the
    workers, not those the loop has consumed. Pass the count the loop consumed in the current
    iteration, ``state_dict(batches=k)``, and load it into the sampler before the loop over the
    ``DataLoader`` starts the epoch.
    """

    def __init__(
        self,
        dataset: CropDataset,
        batch_size: int,
        *,
        shuffle: bool | Shuffle = True,
        window: int | None = None,
        drop_last: bool = True,
        seed: int | None = None,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(dataset, CropDataset):
            raise TypeError(f"dataset must be a CropDataset, got {type(dataset).__name__}")
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

    @property
    def batch_size(self) -> int:
        """Samples per batch (per rank)."""
        return self._progress.batch_size

    @property
    def shuffle(self) -> Shuffle:
        """The order of the epochs: ``"none"``, ``"random"`` or ``"window"``."""
        return self._progress.shuffle

    @property
    def epoch(self) -> int:
        """The epoch of the next (or current) iteration."""
        return self._progress.epoch

    @property
    def position(self) -> int:
        """Samples of the epoch's global order handed out to all ranks (see
        :attr:`CropLoader.position`)."""
        return self._progress.position

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration, for the order and for the dataset's draws
        (``dataset.set_epoch``); the current epoch keeps a position restored by
        :meth:`load_state_dict`."""
        self._progress.set_epoch(epoch)
        self.dataset.set_epoch(self._progress.epoch)

    def __len__(self) -> int:
        """Batches of this rank in a whole epoch."""
        return self._progress.count()

    def batches(self, epoch: int | None = None, *, position: int = 0) -> list[np.ndarray]:
        """The sample indices of each batch this rank gets in ``epoch`` from ``position``."""
        return self._progress.batches(epoch, position)

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the iteration begins at the first next(). DataLoader creates two
        # iterators for its first epoch with workers and drops the first one unused, which
        # must not consume a restored position.
        token, epoch, batches = self._progress.begin()
        self.dataset.set_epoch(epoch)
        for done, batch in enumerate(batches, start=1):
            # Counted before it is handed out: a state taken now resumes after this batch.
            self._progress.advance(token, done)
            yield batch.tolist()
        self._progress.finish(token)

    def state_dict(self, batches: int | None = None) -> dict[str, Any]:
        """The state, as :meth:`CropLoader.state_dict`: where the current iteration stands, or
        where it stands after ``batches`` of its batches (for a plain ``DataLoader`` whose
        workers read ahead)."""
        return self._progress.state_dict(batches)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` (see :meth:`CropLoader.load_state_dict`); also sets the
        dataset's epoch to the state's."""
        self._progress.load_state_dict(state)
        self.dataset.set_epoch(self._progress.epoch)

    def __repr__(self) -> str:
        p = self._progress
        return (
            f"<zarrcrop.torch.CropSampler batches={len(self)} batch_size={p.batch_size} "
            f"shuffle={p.shuffle} epoch={p.epoch} position={p.position} "
            f"rank={p.rank}/{p.world_size}>"
        )
