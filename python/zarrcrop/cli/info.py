"""``zarrcrop info``: a dataset's tree with shapes, chunks, codecs, sizes and read path."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .. import open as open_array
from .common import dir_stats, error, format_bytes


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``info`` command to ``subparsers``."""
    p = subparsers.add_parser(
        "info",
        help="show a dataset's tree: shapes, dtypes, chunks, codecs, sizes, native or not",
        description=(
            "Print the tree of the zarr group (or array) at PATH: for each array its shape, "
            "dtype, chunks (and shards), codecs, compression ratio, size on disk, file count, "
            "and whether zarrcrop reads it natively (if not, why)."
        ),
    )
    p.add_argument("path", metavar="PATH", help="a zarr group or array directory")
    p.set_defaults(func=run)


def codecs_text(arr: zarr.Array[Any]) -> str:
    """The codecs of a zarr v2 or v3 array in one line."""
    meta: Any = arr.metadata  # v2 and v3 metadata have different fields
    if int(meta.zarr_format) == 2:
        parts = [repr(f) for f in (meta.filters or ())]
        parts.append(repr(meta.compressor) if meta.compressor is not None else "no compressor")
        return ", ".join(parts)
    return ", ".join(_v3_codec_text(c) for c in meta.codecs)


def _v3_codec_text(codec: Any) -> str:
    """One zarr v3 codec, sharding with its inner codecs."""
    inner = getattr(codec, "codecs", None)
    if inner is not None and hasattr(codec, "chunk_shape"):
        return (
            f"sharding(inner chunks {tuple(codec.chunk_shape)}: "
            + ", ".join(_v3_codec_text(c) for c in inner)
            + ")"
        )
    name = type(codec).__name__
    if name == "BloscCodec":
        shuffle = getattr(codec.shuffle, "value", codec.shuffle)
        cname = getattr(codec.cname, "value", codec.cname)
        return f"blosc({cname}, clevel {codec.clevel}, {shuffle}, blocksize {codec.blocksize})"
    return name.removesuffix("Codec").lower()


def run(args: argparse.Namespace) -> int:
    """Run ``zarrcrop info`` with the parsed ``args``; returns the exit status."""
    path = Path(args.path).expanduser()
    if not path.exists():
        return error(f"{path} does not exist", code=2)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        return error(f"{path} is not a zarr group or array ({exc.__class__.__name__})", code=2)
    if isinstance(node, zarr.Array):
        _show_array(path, node, str(path), "")
    else:
        _show_group(path, node, str(path), "")
    size, files = dir_stats(path)
    print(f"total: {format_bytes(size)} on disk in {files} file(s)")
    return 0


def _show_array(root: Path, arr: zarr.Array[Any], label: str, indent: str) -> None:
    """Print one array of the dataset at ``root``."""
    where = root / arr.path if arr.path else root
    size, files = dir_stats(where)
    nbytes = int(np.prod(arr.shape)) * arr.dtype.itemsize
    ratio = f"{nbytes / size:.2f}x" if size else "n/a"
    crop = open_array(arr)
    how = "native" if crop.native else f"falls back to zarr-python: {crop.fallback_reason}"
    shards = getattr(arr, "shards", None)
    print(f"{indent}{label}  {arr.shape} {arr.dtype}  (zarr v{arr.metadata.zarr_format})")
    sub = indent + "    "
    print(f"{sub}chunks {tuple(arr.chunks)}" + (f", shards {tuple(shards)}" if shards else ""))
    print(f"{sub}codecs: {codecs_text(arr)}")
    print(
        f"{sub}{format_bytes(nbytes)} of data, {format_bytes(size)} on disk in {files} "
        f"file(s), compression ratio {ratio}"
    )
    print(f"{sub}reads: {how}")


def _show_group(root: Path, group: zarr.Group, label: str, indent: str) -> None:
    """Print a group of the dataset at ``root`` and, indented, its members sorted by name."""
    print(f"{indent}{label}  (group, zarr v{group.metadata.zarr_format})")
    for name, child in sorted(group.members(), key=lambda kv: kv[0]):
        if isinstance(child, zarr.Array):
            _show_array(root, child, name, indent + "  ")
        else:
            _show_group(root, child, name + "/", indent + "  ")
