"""PyTorch integration: aligned multi-resolution random-crop datasets and an in-process loader.

``import zarrcrop`` never imports torch; using :class:`CropDataset` or :class:`CropLoader`
does (``from zarrcrop.torch import CropDataset``). Modules:

- :class:`CropDataset` (``zarrcrop.torch.dataset``): a map-style ``torch.utils.data.Dataset``
  of random crops of one array or of several arrays at different resolutions, aligned on the
  same scene, optionally with ``frames`` consecutive frames per sample and random flips. Works
  under ``torch.utils.data.DataLoader`` with worker processes (fork or spawn, persistent or
  not) and with ``DistributedSampler``.
- :class:`CropLoader` (``zarrcrop.torch.loader``): an in-process batch loader without worker
  processes. It reads each batch with one :meth:`zarrcrop.CropArray.read_crops` call per array
  (on zarrcrop's C++ thread pool, GIL released) into reused, optionally pinned, buffers and
  prefetches the next batches in a background thread while the training step runs. Its
  ``state_dict()`` / ``load_state_dict()`` resume an epoch mid-way, on any number of ranks.
- :class:`CropSampler` (``zarrcrop.torch.sampler``): the same epoch order, rank shares and
  state as a batch sampler for ``DataLoader`` and torchdata's ``StatefulDataLoader``.
- ``zarrcrop.torch.geometry``: the torch-free crop geometry (scales, snapping, the seeded
  draws of :class:`SamplePlan`), importable without torch; likewise ``order`` (the order of
  an epoch and each rank's share), ``state`` (the format of saved states) and ``progress``
  (where a loader stands). ``prefetcher`` is the loader's background reading.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dataset import CropDataset
    from .geometry import SamplePlan
    from .loader import CropLoader
    from .sampler import CropSampler

__all__ = ["CropDataset", "CropLoader", "CropSampler", "SamplePlan"]

# Imported on first use, so that zarrcrop.torch.geometry imports without importing torch.
_SUBMODULES = {
    "CropDataset": "dataset",
    "CropLoader": "loader",
    "CropSampler": "sampler",
    "SamplePlan": "geometry",
}


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULES.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
