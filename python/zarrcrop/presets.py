"""Compressor presets shared by ``create_dataset`` and the writable groups.

``compressor_preset`` turns a preset name (``"zstd"``, ``"lz4"``) into a numcodecs Blosc codec;
``v3_compressor`` translates a numcodecs codec into the zarr v3 codec zarrcrop reads natively.
Both :mod:`zarrcrop.create` and :mod:`zarrcrop.writable` import them from here, so neither
imports the other.
"""

from __future__ import annotations

from typing import Any

import numcodecs
import zarr.codecs

__all__ = [
    "DEFAULT_BLOCKSIZE",
    "PRESETS",
    "PRESET_BLOCKSIZE",
    "compressor_preset",
    "resolve_compressor",
    "v3_compressor",
]

#: Default Blosc block size in bytes of the zstd preset (README, "Layout measurements"): 64 KiB
#: is about 68 rows of a 960-wide uint8 chunk, so a crop decodes little beyond its rows.
DEFAULT_BLOCKSIZE = 64 * 1024
#: The preset names :func:`compressor_preset` accepts.
PRESETS = ("zstd", "lz4")
#: Each preset's default block size (0 = Blosc's own choice): measured fastest per crop. lz4
#: streams decode so fast that the per-block cost of 64 KiB blocks outweighs decoding fewer rows.
PRESET_BLOCKSIZE = {"zstd": DEFAULT_BLOCKSIZE, "lz4": 0}


def compressor_preset(name: str, blocksize: int | None = None) -> numcodecs.Blosc:
    """A compressor preset as a numcodecs codec.

    - ``"zstd"``: Blosc zstd, clevel 5, bit shuffle: the balanced default (good ratio on
      images); 64 KiB blocks.
    - ``"lz4"``: Blosc lz4, clevel 5, byte shuffle: for speed (crops decode faster than zstd's,
      files are larger; the README's "Layout measurements" has the figures); byte shuffle is
      free for uint8 (a no-op) and groups the bytes of float16/float32 values, where it helps
      lz4 most; Blosc's own block size.

    ``blocksize`` (bytes, 0 = Blosc's choice) overrides the preset's block size.
    """
    if name in PRESET_BLOCKSIZE and blocksize is None:
        blocksize = PRESET_BLOCKSIZE[name]
    if name == "zstd":
        return numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE, blocksize=blocksize)
    if name == "lz4":
        return numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE, blocksize=blocksize)
    raise ValueError(f"unknown compressor preset {name!r}; use one of {PRESETS} or a codec")


def v3_compressor(codec: Any) -> Any:
    """Translate a numcodecs compressor to the zarr v3 codec zarrcrop reads natively.

    ``numcodecs.Blosc``, ``numcodecs.Zstd`` and ``numcodecs.GZip`` become ``zarr.codecs``'
    ``BloscCodec``, ``ZstdCodec`` and ``GzipCodec``; anything else is returned unchanged.
    """
    if isinstance(codec, numcodecs.Blosc):
        shuffle: Any = {
            numcodecs.Blosc.NOSHUFFLE: "noshuffle",
            numcodecs.Blosc.SHUFFLE: "shuffle",
            numcodecs.Blosc.BITSHUFFLE: "bitshuffle",
        }.get(codec.shuffle, "shuffle")
        return zarr.codecs.BloscCodec(
            cname=codec.cname, clevel=codec.clevel, shuffle=shuffle, blocksize=codec.blocksize
        )
    if isinstance(codec, numcodecs.Zstd):
        return zarr.codecs.ZstdCodec(level=codec.level)
    if isinstance(codec, numcodecs.GZip):
        return zarr.codecs.GzipCodec(level=codec.level)
    return codec


def resolve_compressor(compressor: Any, zarr_format: int, blocksize: int | None) -> Any:
    """The codec to store with: a preset name becomes its codec, translated for zarr v3.

    ``compressor`` is a preset name, a codec, or None (no compression).
    """
    codec = compressor_preset(compressor, blocksize) if isinstance(compressor, str) else compressor
    if zarr_format == 3 and codec is not None:
        codec = v3_compressor(codec)
    return codec
