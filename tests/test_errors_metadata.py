"""Bad array metadata: negative, zero or overflowing shapes and chunk shapes, shapes, chunk
shapes and shard shapes at and past the int64 / uint64 limits.

Every case must give a clean Python exception, or read as zarr-python reads it (falling back to
zarr-python where the native reader's limits do not hold): never a crash or a raw pybind11
TypeError.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarrcrop


def _write_zarray(path: Path, shape, chunks) -> None:
    path.mkdir()
    meta = {
        "zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": "<i4",
        "compressor": None, "fill_value": 0, "order": "C", "filters": None,
    }  # fmt: skip
    (path / ".zarray").write_text(json.dumps(meta))


def _write_zarr_json(path: Path, shape, chunks) -> None:
    path.mkdir()
    meta = {
        "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }  # fmt: skip
    (path / "zarr.json").write_text(json.dumps(meta))


BAD_METADATA = {
    "negative-shape": ([-4, 8], [2, 2]),
    "negative-chunks": ([4, 8], [-2, 2]),
    "zero-chunks": ([4, 8], [0, 2]),
    "shape-over-int64": ([2**64, 8], [2, 2]),
    "chunks-over-int64": ([4, 8], [2**64, 2]),
    "chunk-bytes-overflow": ([2**62, 2**62], [2**62, 2**62]),
    "grid-overflow": ([2**62, 2**62], [1, 1]),
    "non-integer-shape": ([4.5, 8], [2, 2]),
    "ndim-mismatch": ([4, 8], [2]),
}


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("case", BAD_METADATA)
def test_bad_metadata_gives_clean_exception(tmp_path, fmt, case):
    shape, chunks = BAD_METADATA[case]
    path = tmp_path / "bad.zarr"
    (_write_zarray if fmt == 2 else _write_zarr_json)(path, shape, chunks)
    try:
        ca = zarrcrop.open(path)
    except Exception:
        return  # a clean Python exception (from zarr-python or zarrcrop)
    # it opened: small reads give values or a clean exception, never a crash
    for sel in [(0, 0), (slice(0, 2), slice(0, 2))]:
        try:
            got = ca[sel]
        except Exception:
            continue
        assert np.all(np.asarray(got) == 0)
    try:
        ca.read_crops(np.zeros((1, 2), dtype=np.int64), (2, 2))
    except Exception:
        pass


# Shapes, chunk shapes and shard shapes at and past the int64 / uint64 limits. zarr-python
# opens most of them and reads missing chunks as fill values; zarrcrop must then read the same
# (falling back to zarr-python where the native reader's int64 / 2 GiB limits do not hold) and
# never fail with a raw pybind11 TypeError. Metadata zarr-python rejects must still be rejected.
HUGE = [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**65, -1, -(2**63), -(2**63) - 1, 2**62, 2**31]


def _write_sharded_zarr_json(path: Path, shape, shard, inner) -> None:
    _write_zarr_json(path, shape, shard)
    meta = json.loads((path / "zarr.json").read_text())
    meta["codecs"] = [
        {"name": "sharding_indexed", "configuration": {
            "chunk_shape": inner, "codecs": meta["codecs"], "index_location": "end",
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                             {"name": "crc32c"}],
        }},
    ]  # fmt: skip
    (path / "zarr.json").write_text(json.dumps(meta))


def _huge_cases():
    for value in HUGE:
        for fmt in (2, 3):
            yield pytest.param(fmt, [value, 8], [2, 2], None, id=f"v{fmt}-shape-{value}")
            yield pytest.param(fmt, [4, 8], [value, 2], None, id=f"v{fmt}-chunks-{value}")
        yield pytest.param(3, [value, 8], [4, 4], [2, 2], id=f"sharded-shape-{value}")
        yield pytest.param(3, [4, 8], [value, 4], [2, 4], id=f"sharded-shard-{value}")
        yield pytest.param(3, [4, 8], [4, 4], [value, 2], id=f"sharded-inner-{value}")


@pytest.mark.parametrize(("fmt", "shape", "chunks", "inner"), list(_huge_cases()))
def test_huge_metadata_matches_zarr(tmp_path, fmt, shape, chunks, inner):
    path = tmp_path / "huge.zarr"
    if inner is not None:
        _write_sharded_zarr_json(path, shape, chunks, inner)
    else:
        (_write_zarray if fmt == 2 else _write_zarr_json)(path, shape, chunks)
    try:
        za = zarr.open_array(str(path), mode="r")
    except ValueError as exc:
        with pytest.raises(ValueError) as info:
            zarrcrop.open(path)
        assert str(info.value) == str(exc)
        return
    ca = zarrcrop.open(path)
    sel = (slice(0, 2), slice(0, 3))
    np.testing.assert_array_equal(ca[sel], za[sel])
    np.testing.assert_array_equal(ca.read_crops([[0, 0], [1, 2]], (2, 2)), np.zeros((2, 2, 2)))
    if not ca.native:
        assert "2 GiB" in ca.fallback_reason or "int64" in ca.fallback_reason, ca.fallback_reason
        with pytest.raises(zarrcrop.FallbackError, match=r"huge\.zarr"):
            zarrcrop.open(path, strict=True)


def test_huge_shard_index_with_a_shard_file_falls_back(tmp_path):
    # 2**61 inner chunks per shard: the index would need 2**65 bytes (it used to wrap around).
    path = tmp_path / "huge.zarr"
    _write_sharded_zarr_json(path, [4, 8], [2**62, 8], [2, 4])
    (path / "c" / "0").mkdir(parents=True)
    (path / "c" / "0" / "0").write_bytes(bytes(64))
    ca = zarrcrop.open(path)
    assert not ca.native and "index" in ca.fallback_reason


def test_native_reader_rejects_huge_shard_index(tmp_path):
    # The core's own check (the Python layer falls back before reaching it).
    with pytest.raises(ValueError, match="shard index"):
        zarrcrop._core.CropReader(
            name="x", root=str(tmp_path), shape=[4, 8], chunks=[2, 4], itemsize=4, codecs=[],
            key_prefix="c", key_separator="/", fill_value=bytes(4), shard_shape=[2**62, 8],
        )  # fmt: skip


@pytest.mark.parametrize(
    "shape", [[2**63 - 1, 8], [2**64, 8], [2**63 - 1, 2**63 - 1], [2**62, 4]], ids=str
)
def test_huge_shape_size_is_exact(tmp_path, shape):
    # zarr-python 3.1 computes size in int64: -8 for (2**63 - 1, 8), an error past 2**64.
    path = tmp_path / "huge.zarr"
    _write_zarray(path, shape, [2, 2])
    ca = zarrcrop.open(path)
    assert ca.size == shape[0] * shape[1]
    assert ca.nbytes == 4 * shape[0] * shape[1]
    if shape[0] < 2**63:
        assert len(ca) == shape[0]
    else:  # Python's own limit for len()
        with pytest.raises(OverflowError):
            len(ca)
