"""Array builders: the configuration space (dtypes, Blosc settings, key encodings, layouts),
``ArraySpec`` and ``create_array`` (an on-disk array written with zarr-python)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
import zarr.codecs

DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]

BLOSC_CNAMES = ["lz4", "lz4hc", "blosclz", "zstd", "zlib"]
BLOSC_SHUFFLES = ["noshuffle", "shuffle", "bitshuffle"]
_NUMCODECS_SHUFFLE = {
    "noshuffle": numcodecs.Blosc.NOSHUFFLE,
    "shuffle": numcodecs.Blosc.SHUFFLE,
    "bitshuffle": numcodecs.Blosc.BITSHUFFLE,
}

# chunk_key_encoding values accepted by zarr.create_array
V2_KEY_ENCODINGS = [
    {"name": "v2", "separator": "."},
    {"name": "v2", "separator": "/"},
]
V3_KEY_ENCODINGS = [
    {"name": "default", "separator": "/"},
    {"name": "default", "separator": "."},
    {"name": "v2", "separator": "."},
    {"name": "v2", "separator": "/"},
]

# Layouts besides the plain one ("native": blosc or no compressor, C order, little endian).
# Those in NATIVE_LAYOUTS are read natively too; the rest fall back to zarr-python. All must
# give results equal to zarr-python's.
NATIVE_LAYOUTS = [
    "v2-order-F",
    "v2-big-endian",
    "v2-numcodecs-zstd",
    "v3-default-codecs",
    "v3-big-endian",
    "v3-zstd-crc32c",
    "v3-blosc-crc32c",
    "v3-sharding",
    "v2-numcodecs-gzip",
    "v3-gzip",
]
FALLBACK_LAYOUTS = [
    "v2-delta-filter",
    "v2-numcodecs-lz4",
    "v3-transpose",
]


@dataclass(frozen=True)
class Blosc:
    cname: str
    clevel: int
    shuffle: str  # one of BLOSC_SHUFFLES

    def __str__(self) -> str:
        return f"blosc-{self.cname}-{self.clevel}-{self.shuffle}"


@dataclass(frozen=True)
class ArraySpec:
    """Everything needed to create one on-disk zarr array."""

    zarr_format: int
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    codec: Blosc | None = None
    fill_value: Any = 0
    key_encoding: dict = field(default_factory=lambda: {"name": "v2", "separator": "."})
    layout: str = "native"  # "native", or one of NATIVE_LAYOUTS or FALLBACK_LAYOUTS

    @property
    def native(self) -> bool:
        return self.layout == "native" or self.layout in NATIVE_LAYOUTS


def _zarr_create_kwargs(spec: ArraySpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "shape": spec.shape,
        "chunks": spec.chunks,
        "dtype": spec.dtype,
        "zarr_format": spec.zarr_format,
        "fill_value": spec.fill_value,
        "chunk_key_encoding": spec.key_encoding,
    }
    layout = spec.layout
    if spec.zarr_format == 2:
        kwargs["filters"] = None
        if spec.codec is None:
            kwargs["compressors"] = None
        else:
            kwargs["compressors"] = numcodecs.Blosc(
                cname=spec.codec.cname,
                clevel=spec.codec.clevel,
                shuffle=_NUMCODECS_SHUFFLE[spec.codec.shuffle],
            )
        if layout == "v2-delta-filter":
            kwargs["filters"] = [numcodecs.Delta(dtype=spec.dtype)]
        elif layout == "v2-order-F":
            kwargs["order"] = "F"
        elif layout == "v2-big-endian":
            kwargs["dtype"] = np.dtype(spec.dtype).newbyteorder(">")
        elif layout == "v2-numcodecs-zstd":
            kwargs["compressors"] = numcodecs.Zstd(level=3)
        elif layout == "v2-numcodecs-gzip":
            kwargs["compressors"] = numcodecs.GZip(level=1)
        elif layout == "v2-numcodecs-lz4":
            kwargs["compressors"] = numcodecs.LZ4()
        else:
            assert layout == "native", layout
    else:
        kwargs["filters"] = None
        kwargs["serializer"] = zarr.codecs.BytesCodec()
        if spec.codec is None:
            kwargs["compressors"] = None
        else:
            kwargs["compressors"] = zarr.codecs.BloscCodec(
                cname=spec.codec.cname, clevel=spec.codec.clevel, shuffle=spec.codec.shuffle
            )
        if layout == "v3-default-codecs":
            del kwargs["filters"], kwargs["serializer"], kwargs["compressors"]
        elif layout == "v3-big-endian":
            kwargs["serializer"] = zarr.codecs.BytesCodec(endian="big")
        elif layout == "v3-zstd-crc32c":
            kwargs["compressors"] = [zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec()]
        elif layout == "v3-blosc-crc32c":
            blosc = kwargs["compressors"] or zarr.codecs.BloscCodec(cname="lz4", clevel=5)
            kwargs["compressors"] = [blosc, zarr.codecs.Crc32cCodec()]
        elif layout == "v3-gzip":
            kwargs["compressors"] = zarr.codecs.GzipCodec(level=1)
        elif layout == "v3-transpose":
            kwargs["filters"] = [
                zarr.codecs.TransposeCodec(order=tuple(range(len(spec.shape)))[::-1])
            ]
        elif layout == "v3-sharding":
            kwargs["shards"] = tuple(2 * c for c in spec.chunks)
        else:
            assert layout == "native", layout
    return kwargs


def create_array(
    path: Path | str,
    spec: ArraySpec,
    data: np.ndarray | None = None,
    missing: Sequence[tuple[int, ...]] = (),
) -> zarr.Array:
    """Create ``spec`` at ``path``, write ``data`` and delete the chunk files in ``missing``.

    zarr-python itself also skips chunks that are entirely ``fill_value``.
    """
    z = zarr.create_array(store=str(path), **_zarr_create_kwargs(spec))
    if data is not None:
        z[...] = data
    for coords in missing:
        chunk_file = Path(path) / z.metadata.encode_chunk_key(tuple(coords))
        if chunk_file.is_file():
            chunk_file.unlink()
    return z


def chunk_grid(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))


def all_chunk_coords(shape: Sequence[int], chunks: Sequence[int]) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in c) for c in np.ndindex(*chunk_grid(shape, chunks))]


#: The small native v2 array of the ``native_v2`` fixture (tests/conftest.py): int16, Blosc lz4,
#: fill value -3, chunks that do not divide the shape.
NATIVE_V2 = ArraySpec(
    zarr_format=2,
    shape=(10, 13, 3),
    chunks=(4, 5, 2),
    dtype="int16",
    codec=Blosc("lz4", 5, "shuffle"),
    fill_value=-3,
)


#: The arrays the object-store tests serve (tests/test_remote_*.py), by name.
REMOTE_SPECS = {
    # Large zstd chunks of photo-like runs: read piecewise (header, then blocks).
    "v2": ArraySpec(2, (3, 512, 700), (1, 256, 350), "uint16", Blosc("zstd", 3, "bitshuffle")),
    # Small lz4 chunks (tests leave one missing: it reads as the fill value): read whole.
    "v2small": ArraySpec(2, (3, 200, 300), (1, 40, 50), "uint8", Blosc("lz4", 5, "shuffle")),
    "v3sharded": ArraySpec(
        3,
        (3, 512, 700),
        (1, 128, 175),
        "uint16",
        Blosc("zstd", 3, "bitshuffle"),
        layout="v3-sharding",
    ),
    "v3zstd": ArraySpec(3, (3, 200, 300), (1, 64, 64), "int16", None, layout="v3-zstd-crc32c"),
    # Incompressible: Blosc stores the chunks raw (memcpyed).
    "v2raw": ArraySpec(2, (2, 300, 400), (1, 300, 400), "uint8", Blosc("lz4", 1, "noshuffle")),
}
