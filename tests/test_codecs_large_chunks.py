"""Blosc chunks near the 2 GiB limit of the Blosc1 header's int32 fields.

nbytes + blocksize overflows int32 for such chunks: the block count and every offset derived
from the header are computed in 64 bits.
"""

from __future__ import annotations

import os
import struct

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop

# Every array here is meant to be read natively: strict mode (tests/conftest.py).
pytestmark = pytest.mark.native

ZSTD_NOSPLIT = (4 << 5) | 0x10  # flags: zstd streams, one stream per block


def _array(path, n: int) -> None:
    zarr.create_array(
        store=str(path), shape=(n,), chunks=(n,), dtype="uint8", zarr_format=2,
        compressors=numcodecs.Blosc(cname="zstd", clevel=1, shuffle=0), fill_value=0,
    )  # fmt: skip


def test_valid_chunk_over_1_gib_with_large_blocks(tmp_path):
    # 1.5 GiB of which the last 100 bytes are not zero; numcodecs caps the block size at
    # 715,827,542 bytes: nbytes + blocksize > 2**31.
    n = 3 * 2**29
    data = np.zeros(n, dtype=np.uint8)  # untouched pages: no memory until written
    data[-100:] = np.arange(1, 101, dtype=np.uint8)
    encoded = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=0, blocksize=2**30).encode(data)
    _, _, _, _, nbytes, blocksize, _ = struct.unpack("<BBBBiii", encoded[:16])
    assert nbytes == n and nbytes + blocksize > 2**31 - 1
    path = tmp_path / "big.zarr"
    _array(path, n)
    (path / "0").write_bytes(encoded)
    a = zarrcrop.open(path)
    assert a.native
    np.testing.assert_array_equal(a[-16:], data[-16:])
    np.testing.assert_array_equal(a[n - 300 : n - 80 : 7], data[n - 300 : n - 80 : 7])
    crops = a.read_crops([[n - 100], [n - 50]], (50,))
    np.testing.assert_array_equal(crops, [data[-100:-50], data[-50:]])


def _crafted(nbytes: int, blocksize: int, stream: bytes) -> bytes:
    """One Blosc1 chunk: header, the offset of each block, each block's one stream."""
    nblocks = -(-nbytes // blocksize)
    body = b""
    offsets = []
    first = 16 + 4 * nblocks
    for _ in range(nblocks):
        offsets.append(first + len(body))
        body += struct.pack("<i", len(stream)) + stream
    cbytes = first + len(body)
    header = struct.pack("<BBBBiii", 2, 1, ZSTD_NOSPLIT, 1, nbytes, blocksize, cbytes)
    return header + struct.pack(f"<{nblocks}i", *offsets) + body


@pytest.mark.parametrize(
    ("nbytes", "blocksize"),
    [(2**31 - 1, 2**31 - 1), (3 * 2**29, 2**30), (2**31 - 1, 2**30 + 1)],
    ids=["max-max", "1.5GiB-1GiB", "max-1GiB+1"],
)
def test_huge_header_fields_are_an_error_not_unwritten_output(tmp_path, nbytes, blocksize):
    # The block count wrapped around in int32 (0 for nbytes = blocksize = 2**31 - 1): a read
    # returned at once with an output nothing had written.
    path = tmp_path / "crafted.zarr"
    _array(path, nbytes)
    (path / "0").write_bytes(_crafted(nbytes, blocksize, b"\x28\xb5\x2f\xfd garbage"))
    a = zarrcrop.open(path)
    assert a.native
    for prefill in (0, 255):
        out = np.full(16, prefill, dtype=np.uint8)
        with pytest.raises(zarrcrop.ChunkError, match=r"chunk '0'.*block"):
            a.read((slice(0, 16),), out=out)
        with pytest.raises(zarrcrop.ChunkError):
            a.read_crops([[nbytes - 8]], (8,))


def test_header_blocks_must_cover_the_chunk(tmp_path):
    # A block count that cannot hold nbytes is refused before any block is read.
    path = tmp_path / "crafted.zarr"
    n = 1 << 20
    _array(path, n)
    chunk = bytearray(_crafted(n, n // 4, b"\x00" * 8))
    chunk[8:12] = struct.pack("<i", n // 4 - 1)  # blocksize now needs 5 blocks, 4 are listed
    (path / "0").write_bytes(bytes(chunk))
    with pytest.raises(zarrcrop.ChunkError, match="chunk '0'"):
        zarrcrop.open(path)[-4:]
    assert os.path.getsize(path / "0") == len(chunk)
