"""Inputs for the native tools in fuzz/native/ (nothing binary is committed; CI makes them).

    python fuzz/native/make_inputs.py arrays DIR   # arrays for leak_check (zarr-python)
    python fuzz/native/make_inputs.py corpus DIR   # seed corpus for fuzz_decoder

`arrays` writes, with zarr-python, the arrays whose layouts leak_check.cpp hardcodes:
  v2_blosc  uint16 (150, 200), chunks (64, 64), Blosc zstd bitshuffle, 1 KiB blocks (8 per chunk)
  v2_raw    int32 (50, 70), chunks (16, 32), no compressor
  v3_shard  uint8 (96, 96), shards (64, 64) of (16, 16) inner chunks, bytes + zstd,
            index bytes + crc32c
  and damaged copies (v2_blosc_bad, v3_shard_bad) whose chunks raise ChunkError.
Every value is (131 * i + 7 * j) modulo the dtype's range, which leak_check verifies.

`corpus` writes valid fuzz inputs in fuzz_input.hpp's format: a 16-byte header and a chunk
(or shard) file encoded with numcodecs (Blosc1 format, as zarr writes; C-Blosc2's own API
writes the Blosc2 format, which zarr chunks never have).
"""

from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

# ------------------------------------------------------------------------------ arrays


def _values(shape: tuple[int, int], dtype: str) -> np.ndarray:
    i, j = np.indices(shape, dtype=np.int64)
    return ((131 * i + 7 * j) % (np.iinfo(dtype).max + 1)).astype(dtype)


def make_arrays(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    blosc = numcodecs.Blosc("zstd", 3, shuffle=numcodecs.Blosc.BITSHUFFLE, blocksize=1024)
    a = zarr.create_array(
        root / "v2_blosc",
        shape=(150, 200),
        chunks=(64, 64),
        dtype="uint16",
        zarr_format=2,
        compressors=blosc,
        fill_value=0,
    )
    a[...] = _values(a.shape, "uint16")
    a = zarr.create_array(
        root / "v2_raw",
        shape=(50, 70),
        chunks=(16, 32),
        dtype="int32",
        zarr_format=2,
        compressors=None,
        fill_value=0,
    )
    a[...] = _values(a.shape, "int32")
    a = zarr.create_array(
        root / "v3_shard",
        shape=(96, 96),
        chunks=(16, 16),
        shards=(64, 64),
        dtype="uint8",
        zarr_format=3,
        compressors=ZstdCodec(level=1),
        fill_value=0,
    )
    a[...] = _values(a.shape, "uint8")
    codec = a.metadata.codecs[0]
    assert isinstance(codec, ShardingCodec), codec
    assert [type(c) for c in codec.index_codecs] == [BytesCodec, Crc32cCodec], codec

    # Damaged copies: every kind of error path of the core.
    bad = root / "v2_blosc_bad"
    shutil.copytree(root / "v2_blosc", bad)
    data = (bad / "0.0").read_bytes()
    (bad / "0.0").write_bytes(data[: len(data) // 2])  # truncated
    data = bytearray((bad / "0.1").read_bytes())
    data[4:8] = struct.pack("<i", 12345)  # header nbytes wrong
    (bad / "0.1").write_bytes(bytes(data))
    data = bytearray((bad / "1.0").read_bytes())
    for k in range(64, len(data), 7):  # garbage inside the compressed streams
        data[k] ^= 0xA5
    (bad / "1.0").write_bytes(bytes(data))
    (bad / "1.1").unlink()
    (bad / "1.1").mkdir()  # a directory where a chunk should be: ChunkIoError
    bad = root / "v3_shard_bad"
    shutil.copytree(root / "v3_shard", bad)
    data = bytearray((bad / "c" / "0" / "0").read_bytes())
    data[-5] ^= 0xFF  # index checksum mismatch
    (bad / "c" / "0" / "0").write_bytes(bytes(data))
    data = bytearray((bad / "c" / "1" / "1").read_bytes())
    data[10] ^= 0xFF  # a damaged zstd frame of an inner chunk
    (bad / "c" / "1" / "1").write_bytes(bytes(data))


# ------------------------------------------------------------------------------ corpus


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _encode(codec: int, raw: np.ndarray, variant: int) -> bytes:
    """codec as in fuzz_input.hpp: 0 Blosc, 1 zstd, 2 gzip, 3 none, 4 zstd + crc32c."""
    if codec == 0:
        cname = ("zstd", "lz4", "blosclz", "zlib")[variant % 4]
        shuffle = (numcodecs.Blosc.BITSHUFFLE, numcodecs.Blosc.SHUFFLE, numcodecs.Blosc.NOSHUFFLE)[
            variant % 3
        ]
        blocksize = (0, 64, 256, 1024)[variant % 4]
        return numcodecs.Blosc(cname, 5, shuffle=shuffle, blocksize=blocksize).encode(raw)
    if codec == 1:
        return numcodecs.Zstd(level=1).encode(raw)
    if codec == 2:
        return numcodecs.GZip(level=1).encode(raw)
    if codec == 3:
        return raw.tobytes()
    frame = numcodecs.Zstd(level=1).encode(raw)
    return frame + struct.pack("<I", _crc32c(frame))


def _chunk_values(n: int, itemsize: int, variant: int) -> np.ndarray:
    dtype = f"u{itemsize}"
    x = np.arange(n, dtype=np.uint64)
    if variant % 2:
        x = (x * 2654435761) >> 7  # less compressible
    return x.astype(dtype)  # wraps modulo the dtype's range


def make_corpus(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    variant = 0
    for kind in range(6):
        for itemsize_bits in range(4):
            for ndim in (1, 2, 3):
                for chunk_sel in ((11, 11, 11), (15, 3, 7), (5, 20, 2)):
                    variant += 1
                    itemsize = 1 << itemsize_bits
                    chunks = [1 + (chunk_sel[d] % 24) for d in range(ndim)]
                    flags = (
                        itemsize_bits
                        | (0x10 if variant % 5 == 0 else 0)
                        | (0x20 if variant % 7 == 0 else 0)
                    )
                    inner = variant % 4
                    if kind == 5:
                        flags |= 0x40 if variant % 3 == 0 else 0
                    header = bytes(
                        [
                            kind,
                            flags,
                            ndim - 1,
                            *[*chunk_sel, 0][:3],
                            variant & 0x7,
                            inner,
                            variant % 97,
                            (variant * 5) % 89,
                            variant % 31,
                            variant & 0xFF,
                            *[(variant * (d + 3)) % 47 for d in range(3)],
                            variant & 0xFF,
                        ]
                    )
                    assert len(header) == 16
                    n = int(np.prod(chunks))
                    if kind == 2 and not hasattr(numcodecs, "GZip"):
                        continue
                    if kind == 5:
                        codec = (0, 1, 3, 4)[inner]
                        n_inner = 2**ndim
                        parts = [
                            _encode(codec, _chunk_values(n, itemsize, variant + k), variant)
                            for k in range(n_inner)
                        ]
                        if variant % 4 == 1:
                            parts[1] = b""  # an empty inner chunk (fill value)
                        index_bytes = 16 * n_inner + 4
                        pos = index_bytes if flags & 0x40 else 0
                        index = b""
                        body = b""
                        for p in parts:
                            if p:
                                index += struct.pack("<QQ", pos + len(body), len(p))
                                body += p
                            else:
                                index += struct.pack("<QQ", 2**64 - 1, 2**64 - 1)
                        index += struct.pack("<I", _crc32c(index))
                        payload = index + body if flags & 0x40 else body + index
                    else:
                        payload = _encode(kind, _chunk_values(n, itemsize, variant), variant)
                    (out / f"seed-{count:04d}").write_bytes(header + payload)
                    count += 1
    return count


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("arrays", "corpus"):
        sys.exit(__doc__)
    target = Path(sys.argv[2])
    if sys.argv[1] == "arrays":
        make_arrays(target)
        print(f"arrays written to {target}")
    else:
        print(f"{make_corpus(target)} seeds written to {target}")


if __name__ == "__main__":
    main()
