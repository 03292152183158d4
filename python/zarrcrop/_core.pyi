"""Type stubs for the private native module zarrcrop._core."""

from collections.abc import Sequence
from typing import Any

blosc_version: str

class ChunkError(ValueError):
    """A chunk's bytes are malformed; the message names the array and chunk key."""

class CropReader:
    def __init__(
        self,
        name: str,
        root: str | bytes,  # bytes: any directory name, UTF-8 or not
        shape: Sequence[int],
        chunks: Sequence[int],
        itemsize: int,
        codecs: Sequence[str],
        key_prefix: str,
        key_separator: str,
        fill_value: bytes,
        cache_bytes: int = 0,
        swap_width: int = 0,
        order: str = "C",
        shard_shape: Sequence[int] = (),
        shard_index_location: str = "end",
        shard_index_crc32c: bool = True,
    ) -> None: ...
    def read(
        self, starts: Sequence[int], steps: Sequence[int], counts: Sequence[int], out: Any
    ) -> None: ...
    def read_crops(
        self,
        starts: Any,
        crop_shape: Sequence[int],
        out: Any,
        fill_outside: bool,
        fill_value: bytes,
    ) -> None: ...
    def prefetch(
        self, starts: Any, crop_shape: Sequence[int], fill_outside: bool, budget: int
    ) -> int: ...
    def decode_seconds(
        self, starts: Any, crop_shape: Sequence[int], shared: bool, fill_outside: bool = False
    ) -> float: ...
    def cache_info(self) -> dict[str, int]: ...
    def clear_cache(self) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def root(self) -> str: ...

def set_num_threads(n: int) -> None: ...

MAX_THREADS: int

def get_num_threads() -> int: ...
def available_cpus() -> int: ...
def set_map_limit(nbytes: int) -> None: ...
def get_map_limit() -> int: ...

DEFAULT_MAP_LIMIT: int

def map_info() -> dict[str, int]: ...
def clear_maps() -> None: ...
def set_index_cache_limit(nbytes: int) -> None: ...
def get_index_cache_limit() -> int: ...

DEFAULT_INDEX_CACHE_LIMIT: int
SCRATCH_KEEP_BYTES: int

def index_cache_info() -> dict[str, int]: ...
def clear_index_cache() -> None: ...
def gzip_available() -> bool: ...

class _testing:
    """Test and benchmark hooks (a submodule at run time)."""

    @staticmethod
    def stream_copy(data: bytes, offset: int, pad: int = 64) -> bytes: ...
    @staticmethod
    def stream_threshold() -> int: ...
    @staticmethod
    def read_ahead_counts() -> dict[str, int]: ...
    @staticmethod
    def reset_read_ahead_counts() -> None: ...
    @staticmethod
    def mapped_read_probe(path: str, offset: int, length: int, shrink_to: int = -1) -> bytes: ...
    @staticmethod
    def bitunshuffle_u8(data: bytes, impl: str = "auto") -> bytes | None: ...
    @staticmethod
    def bitunshuffle_u8_range(
        data: bytes, start: int, stop: int, impl: str = "auto"
    ) -> bytes | None: ...
    @staticmethod
    def bitunshuffle_items(data: bytes, typesize: int, start: int, stop: int) -> bytes: ...
