"""Dataset creation: ``zarrcrop.create_dataset`` lays arrays out so that crops read fast.

Layout (see docs "Creating datasets"): arrays are (T, C, H, W), one frame per chunk, chunks of
about the crop size in H and W, Blosc with a block size small enough that a crop decodes only
the blocks it needs. Frames are written in parallel (threads, or Dask tasks with ``client=``),
and each finished unit of work leaves a marker file so an interrupted conversion resumes where
it stopped. A lock file in the dataset (``fcntl.flock``, dropped by the kernel when its holder
dies) keeps a second conversion of the same path from writing at the same time.

Modules, in the order ``create_dataset`` uses them:

- :mod:`.images`: image files (Pillow, tifffile) read as (C, H, W) frames;
- :mod:`.sources`: each input (array, iterable, image files) as a source of frames;
- :mod:`.planning`: option checks and per-array plans (dtype, chunks, shards, levels);
- :mod:`.levels`: level names (``lr/{H}p/rgb``) and area downscaling;
- :mod:`.target`: what may be at the output path, opening its root group;
- :mod:`.lock`: the dataset lock file;
- :mod:`.arrays`: creating or reopening the arrays;
- :mod:`.units`: writing one unit of work, reading it back;
- :mod:`.markers`: the done-unit markers that make a conversion resumable;
- :mod:`.runners`: the thread and Dask runners, sharing one loop over the units;
- :mod:`.report`: what ``create_dataset`` returns;
- :mod:`.meta`: the ``zarrcrop`` attribute;
- :mod:`.dataset`: ``create_dataset`` itself, running the steps in order.

The compressor presets live in :mod:`zarrcrop.presets` (shared with the writable groups).
"""

from __future__ import annotations

from ..errors import DatasetLockedError, WriteCheckError
from ..presets import DEFAULT_BLOCKSIZE, PRESET_BLOCKSIZE, PRESETS, compressor_preset
from .dataset import create_dataset
from .images import ImageFiles, image_files, read_image
from .levels import downscale_area
from .lock import LOCK_FILE
from .markers import DONE_DIR
from .meta import ATTR
from .planning import DEFAULT_CROP_SIZE
from .report import ArrayReport, CreateReport

__all__ = [
    "ATTR",
    "DEFAULT_BLOCKSIZE",
    "DEFAULT_CROP_SIZE",
    "DONE_DIR",
    "LOCK_FILE",
    "PRESETS",
    "PRESET_BLOCKSIZE",
    "ArrayReport",
    "CreateReport",
    "DatasetLockedError",
    "ImageFiles",
    "WriteCheckError",
    "compressor_preset",
    "create_dataset",
    "downscale_area",
    "image_files",
    "read_image",
]
