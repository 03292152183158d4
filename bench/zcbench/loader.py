"""Data-loading pipelines compared by bench/test_loader.py: crops delivered as torch tensors.

Every pipeline yields batches of the same random crops (the positions of one
``zarrcrop.torch.CropDataset``, in order): ``CropLoader`` in-process, and a
``torch.utils.data.DataLoader`` with worker processes over a ``CropDataset``, over a minimal
zarr-python dataset and over a minimal tensorstore dataset. torch is imported by the caller.

Also the statistics of the locality benchmark (:func:`order_statistics`): how random an
epoch's order stays and how many chunk files its batches touch, for ``CropLoader``'s
``shuffle="random"`` and ``shuffle="window"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "LOCALITY_ORDERS",
    "PIPELINES",
    "StartsDataset",
    "TensorstoreDataset",
    "ZarrPythonDataset",
    "make_pipeline",
    "order_statistics",
    "worker_threads",
]

#: The pipelines, in the order they run: zarrcrop's loader first, baselines last.
PIPELINES = (
    "croploader",
    "dataloader-cropdataset",
    "dataloader-zarr-python",
    "dataloader-tensorstore",
)


#: The epoch orders compared by the locality benchmark (``CropLoader(shuffle=...)``).
LOCALITY_ORDERS = ("random", "window")


def order_statistics(loader: Any, epochs: range, chunks: tuple[int, ...]) -> dict[str, float]:
    """How random and how local the batches of ``loader`` (a ``CropLoader`` of a dataset of
    one array with chunks ``chunks``) are, averaged over ``epochs``:

    - ``frame_distance``: mean |difference| of the frames of consecutive samples of the
      epoch's order (for uniformly random frames among T: (T * T - 1) / (3 * T));
    - ``frames_per_batch``: mean distinct frames in a batch;
    - ``chunks_per_batch``: mean distinct chunks the crops of a batch touch (each read and
      decoded once by ``read_crops``).
    """
    dataset = loader.dataset
    name = dataset.names[0]
    k, _, h, w = dataset.crop_shapes[name]
    ct, _, cy, cx = chunks
    distance, frames, touched = [], [], []
    for epoch in epochs:
        plan = dataset.sample_plan(np.arange(len(dataset)), epoch)
        distance.append(float(np.abs(np.diff(plan.t[loader.order(epoch)])).mean()))
        for batch in loader.batches(epoch):
            frames.append(len(set(plan.t[batch].tolist())))
            keys = set()
            for i in batch.tolist():
                t, y, x = int(plan.t[i]), int(plan.y[i]), int(plan.x[i])
                for tt in range(t // ct, (t + k - 1) // ct + 1):
                    for yy in range(y // cy, (y + h - 1) // cy + 1):
                        for xx in range(x // cx, (x + w - 1) // cx + 1):
                            keys.add((tt, yy, xx))
            touched.append(len(keys))
    return {
        "frame_distance": float(np.mean(distance)),
        "frames_per_batch": float(np.mean(frames)),
        "chunks_per_batch": float(np.mean(touched)),
    }


def worker_threads(threads: int, workers: int) -> int:
    """Threads per worker process so that all workers together use ``threads``."""
    return max(1, threads // max(1, workers))


class StartsDataset(Dataset[torch.Tensor]):
    """Sample ``i`` is the crop ``arr[t, :, y:y+s, x:x+s]`` at ``starts[i] = (t, 0, y, x)``.

    The array is opened lazily in each process (so the dataset pickles for any start method).
    """

    def __init__(self, path: Path, starts: np.ndarray, size: int) -> None:
        self.path = Path(path)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.size = int(size)
        self._array: Any = None
        self._pid = -1

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def _open(self) -> Any:
        raise NotImplementedError

    def _read(self, array: Any, t: int, y: int, x: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._array is None or self._pid != os.getpid():
            self._array, self._pid = self._open(), os.getpid()
        t, _, y, x = self.starts[index].tolist()
        return torch.from_numpy(np.ascontiguousarray(self._read(self._array, t, y, x)))


class ZarrPythonDataset(StartsDataset):
    """The tutorial's reader: ``zarr.open_array(path)[t, :, y:y+s, x:x+s]``."""

    def _open(self) -> Any:
        import zarr

        return zarr.open_array(os.fspath(self.path), mode="r")

    def _read(self, array: Any, t: int, y: int, x: int) -> np.ndarray:
        s = self.size
        return np.asarray(array[t, :, y : y + s, x : x + s])


class TensorstoreDataset(StartsDataset):
    """tensorstore, no chunk cache, ``threads`` decode/I/O threads per process."""

    def __init__(
        self, path: Path, starts: np.ndarray, size: int, zarr_format: int, threads: int
    ) -> None:
        super().__init__(path, starts, size)
        self.zarr_format = int(zarr_format)
        self.threads = int(threads)

    def _open(self) -> Any:
        import tensorstore

        from .readers import tensorstore_context

        spec = {
            "driver": "zarr" if self.zarr_format == 2 else "zarr3",
            "kvstore": {"driver": "file", "path": os.fspath(self.path)},
            "context": tensorstore_context(self.threads),
        }
        return tensorstore.open(spec, read=True).result()

    def _read(self, array: Any, t: int, y: int, x: int) -> np.ndarray:
        s = self.size
        return np.asarray(array[t, :, y : y + s, x : x + s].read().result())


def make_pipeline(
    name: str,
    path: Path,
    *,
    size: int,
    length: int,
    batch_size: int,
    workers: int,
    threads: int,
    zarr_format: int,
    seed: int = 0,
) -> tuple[Iterator[torch.Tensor], Any]:
    """(an iterator over batches of ``batch_size`` crops, the object to close/delete after).

    All pipelines read the crops of the same ``CropDataset(arr, size, length=length,
    seed=seed)`` in index order 0, 1, 2, ...
    """
    import zarrcrop
    from zarrcrop.torch import CropDataset, CropLoader

    dataset = CropDataset(zarrcrop.open(path), size, length=length, seed=seed)
    if name == "croploader":
        loader = CropLoader(dataset, batch_size, shuffle=False, prefetch=2, drop_last=True)
        it = iter(loader)
        return it, it
    if name == "dataloader-cropdataset":
        dataset.worker_threads = worker_threads(threads, workers)
        source: Dataset[Any] = dataset
    elif name == "dataloader-zarr-python":
        starts = dataset.sample_starts(range(length))["__single__"]
        source = ZarrPythonDataset(path, starts, size)
    elif name == "dataloader-tensorstore":
        starts = dataset.sample_starts(range(length))["__single__"]
        source = TensorstoreDataset(
            path, starts, size, zarr_format, worker_threads(threads, workers)
        )
    else:
        raise ValueError(f"unknown pipeline {name!r}")
    # tensorstore is not fork-safe once it has been used in the parent (as the rest of the
    # suite does): its workers abort. Give it spawned workers; startup is not timed.
    context = "spawn" if name == "dataloader-tensorstore" else None
    loader = DataLoader(
        source,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        persistent_workers=True,
        drop_last=True,
        timeout=600,
        multiprocessing_context=context,
    )
    return iter(loader), loader
