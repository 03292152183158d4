"""zarrcrop: fast native crop reads of chunked, Blosc-compressed Zarr arrays.

A drop-in reader for zarr-python: ``zarrcrop.open_group(path)`` instead of
``zarr.open_group(path, mode="r")``. Basic selections on supported arrays are read by a C++
core (thread pool, C-Blosc2, GIL released); everything else goes through zarr-python with
identical results.
"""

from __future__ import annotations

try:
    from . import _core  # noqa: F401 - fail early with a build hint
except ImportError as exc:  # pragma: no cover - only on broken installs
    raise ImportError(
        "zarrcrop's native extension (zarrcrop._core) could not be imported; was the package "
        "built? Install it with `pip install .` (or `pip install -e . --no-build-isolation` "
        f"for development). Original error: {exc}"
    ) from exc

from ._api import (
    DEFAULT_INDEX_CACHE_LIMIT,
    DEFAULT_MAP_LIMIT,
    MAX_THREADS,
    clear_index_cache,
    clear_maps,
    get_index_cache_limit,
    get_io_threads,
    get_map_limit,
    get_num_threads,
    index_cache_info,
    map_info,
    open,
    open_group,
    set_index_cache_limit,
    set_io_threads,
    set_map_limit,
    set_num_threads,
)
from ._output_pool import (
    DEFAULT_OUTPUT_POOL_LIMIT,
    get_output_pool_limit,
    output_pool_info,
    set_output_pool_limit,
)
from .array import DEFAULT_PREFETCH_BUDGET, CropArray
from .create import create_dataset
from .errors import ChunkError, DatasetLockedError, FallbackError, WriteCheckError
from .group import CropGroup

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_INDEX_CACHE_LIMIT",
    "DEFAULT_MAP_LIMIT",
    "DEFAULT_OUTPUT_POOL_LIMIT",
    "DEFAULT_PREFETCH_BUDGET",
    "MAX_THREADS",
    "ChunkError",
    "CropArray",
    "CropGroup",
    "DatasetLockedError",
    "FallbackError",
    "WriteCheckError",
    "__version__",
    "clear_index_cache",
    "clear_maps",
    "create_dataset",
    "get_index_cache_limit",
    "get_io_threads",
    "get_map_limit",
    "get_num_threads",
    "get_output_pool_limit",
    "index_cache_info",
    "map_info",
    "open",
    "open_group",
    "output_pool_info",
    "set_index_cache_limit",
    "set_io_threads",
    "set_map_limit",
    "set_num_threads",
    "set_output_pool_limit",
]
