"""Where a :class:`~zarrcrop.torch.CropLoader` or :class:`~zarrcrop.torch.CropSampler` stands:
the epoch, the position in its global order, this rank's batches and the state dict
(torch-free; the order and the ranks' shares are ``zarrcrop.torch.order``'s)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .order import Shuffle, batch_count, epoch_order, position_after, rank_batches, shuffle_mode
from .state import check_state, dataset_identity, make_state

if TYPE_CHECKING:
    from .dataset import CropDataset

__all__ = ["EpochProgress"]


class EpochProgress:
    """The epoch in progress, the position reached in its global order, and its state.

    The owner calls :meth:`begin` when an iteration starts (it resumes from the position of a
    loaded state, once), :meth:`advance` as batches are handed out and :meth:`finish` at the
    end of the epoch. Only the latest iteration moves the position.
    """

    def __init__(
        self,
        dataset: CropDataset,
        batch_size: int,
        *,
        shuffle: bool | str,
        window: int | None,
        drop_last: bool,
        seed: int,
        epoch: int,
        rank: int,
        world_size: int,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world={world_size}")
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.shuffle: Shuffle = shuffle_mode(shuffle)
        if self.shuffle == "window":
            self.window = dataset.file_frames if window is None else int(window)
            if self.window < 1:
                raise ValueError(f"window must be >= 1 frame, got {window}")
            # A group of the window order is one rank's batch: batches stay in one window.
            self.group = self.batch_size
        elif window is not None:
            raise ValueError('window applies to shuffle="window" only')
        else:
            self.window = self.group = 0
        self.epoch = int(epoch)
        #: Samples of the epoch's global order consumed by all ranks (by batches handed out).
        self.position = 0
        self._resume = 0  # where the next iteration starts (a loaded state's position)
        self._start = 0  # where the latest iteration started
        self._iteration = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select ``epoch``; another epoch than the current one starts at its beginning."""
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = self._resume = 0

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The global order of ``epoch`` (default: the current one); the last one is kept."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        n = len(self.dataset)
        frames = None
        if self.shuffle == "window":
            # The frame of every sample of the epoch: the dataset's own draws.
            frames = self.dataset.sample_plan(np.arange(n, dtype=np.int64), epoch).t
        order = epoch_order(
            n,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            frames=frames,
            window=self.window,
            group=self.group,
        )
        order.setflags(write=False)
        self._cache = (epoch, order)
        return order

    def batches(self, epoch: int | None = None, position: int = 0) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` from ``position`` of its global order."""
        position = int(position)
        if not 0 <= position <= len(self.dataset):
            raise ValueError(f"position must be in [0, {len(self.dataset)}], got {position}")
        return rank_batches(
            self.order(epoch),
            position,
            rank=self.rank,
            world_size=self.world_size,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
        )

    def count(self, position: int = 0) -> int:
        """This rank's number of batches from ``position`` (no order is computed)."""
        return batch_count(
            len(self.dataset) - int(position),
            world_size=self.world_size,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
        )

    # -- iterations -------------------------------------------------------------------------

    def begin(self) -> tuple[int, int, list[np.ndarray]]:
        """Start an iteration of the current epoch: ``(token, epoch, batches)``. It starts at
        the position of a state loaded since the last iteration began, else at 0."""
        start, self._resume = self._resume, 0
        self._iteration += 1
        self._start = self.position = start
        return self._iteration, self.epoch, self.batches(self.epoch, start)

    def advance(self, token: int, batches: int) -> None:
        """Iteration ``token`` has handed out ``batches`` batches."""
        if token == self._iteration:
            self.position = self._after(batches)

    def finish(self, token: int) -> None:
        """Iteration ``token`` reached the end of the epoch."""
        if token == self._iteration:
            self.position = len(self.dataset)

    def _after(self, batches: int) -> int:
        return position_after(
            self._start,
            batches,
            length=len(self.dataset),
            world_size=self.world_size,
            batch_size=self.batch_size,
        )

    # -- state --------------------------------------------------------------------------------

    def state_dict(self, batches: int | None = None) -> dict[str, Any]:
        """The state (``zarrcrop.torch.state``'s format): the current epoch and position, or
        the position after ``batches`` batches of the latest iteration."""
        if batches is not None and int(batches) < 0:
            raise ValueError(f"batches must be >= 0, got {batches}")
        position = self.position if batches is None else self._after(int(batches))
        return make_state(
            epoch=self.epoch,
            position=position,
            world_size=self.world_size,
            batch_size=self.batch_size,
            seed=self.seed,
            shuffle=self.shuffle,
            window=self.window,
            group=self.group,
            dataset=dataset_identity(self.dataset),
        )

    def load_state_dict(self, state: Any) -> None:
        """Check ``state`` and make the next iteration resume from it."""
        epoch, position = check_state(state, self.state_dict())
        self.epoch = epoch
        self.position = self._resume = position
        self._iteration += 1  # an iteration in progress no longer moves the position
