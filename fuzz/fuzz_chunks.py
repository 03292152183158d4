"""Fuzz harness for zarrcrop's native chunk and shard decoding, over the Python API.

At start it builds small native arrays in a temporary directory (v2 Blosc zstd and lz4 with
several blocks per chunk, v2 uncompressed, v3 bytes+zstd+crc32c, v3 sharded with a crc32c
index) and takes their chunk and shard files as the seed corpus. Each fuzz input selects one
of these arrays, is written as the bytes of one of its chunk (or shard) files, and is read
back through zarrcrop: the whole array, partial selections and ``read_crops``. Any exception
other than ``zarrcrop.ChunkError`` or ``OSError`` is a finding and is raised (a crash or a
sanitizer report ends the process anyway), and so is a successful read that leaves part of its
output unwritten: every read goes into two ``out=`` buffers prefilled differently, which must
agree.

By default (``--mode simple``) a deterministic pure-Python mutation loop runs: bit flips,
truncations, insertions, int32 overwrites of the Blosc header fields and the
block-offset/stream-size area, and uint64 overwrites in shard indexes. ``--mode atheris`` (or
``ZARRCROP_FUZZ_ATHERIS=1``, with atheris installed) lets atheris/libFuzzer drive the inputs
instead, but without coverage feedback here: atheris' native instrumentation needs clang, and
under a preloaded ASan runtime libFuzzer gets no coverage at all, so the structured loop finds
more.

    python fuzz/fuzz_chunks.py --seconds 120 --seed 1
    python fuzz/fuzz_chunks.py --mode simple --runs 20000
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
import zarrcrop
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

ALLOWED = (zarrcrop.ChunkError, OSError)

# ------------------------------------------------------------------------------ targets


@dataclass
class Target:
    name: str
    path: Path
    key: str  # the chunk or shard file that the fuzz input replaces
    sharded: bool
    array: object = None  # the zarrcrop.CropArray, opened once

    @property
    def file(self) -> Path:
        return self.path / self.key


def _data(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    n = int(np.prod(shape))
    return ((np.arange(n) // 5) % 97).astype(dtype).reshape(shape)


def _v2(path: Path, compressor, dtype: str = "float32") -> None:
    za = zarr.create_array(
        store=str(path), shape=(40, 48), chunks=(32, 32), dtype=dtype, zarr_format=2,
        compressors=compressor, filters=None, fill_value=0,
    )  # fmt: skip
    za[...] = _data((40, 48), dtype)


def build_targets(root: Path) -> list[Target]:
    """Creates the arrays; returns one target per (array, chunk file)."""
    specs = {
        # 32*32*4 = 4096 bytes per chunk, blocksize 256: 16 blocks (2048 bytes, 8, for int16)
        "v2-blosc-zstd": lambda p: _v2(
            p, numcodecs.Blosc("zstd", 5, numcodecs.Blosc.SHUFFLE, blocksize=256)
        ),
        "v2-blosc-lz4": lambda p: _v2(
            p, numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE, blocksize=256)
        ),
        "v2-blosc-blosclz-int16": lambda p: _v2(
            p, numcodecs.Blosc("blosclz", 9, numcodecs.Blosc.NOSHUFFLE, blocksize=256), "int16"
        ),
        "v2-raw": lambda p: _v2(p, None),
    }
    targets: list[Target] = []
    for name, make in specs.items():
        path = root / f"{name}.zarr"
        make(path)
        targets.append(Target(name, path, "0.0", False))
        targets.append(Target(name + "-edge", path, "1.1", False))

    path = root / "v3-zstd-crc32c.zarr"
    za = zarr.create_array(
        store=str(path), shape=(40, 48), chunks=(32, 32), dtype="uint16",
        compressors=[ZstdCodec(level=1), Crc32cCodec()], fill_value=0,
    )  # fmt: skip
    za[...] = _data((40, 48), "uint16")
    targets.append(Target("v3-zstd-crc32c", path, "c/0/0", False))

    path = root / "v3-sharded.zarr"
    serializer = ShardingCodec(
        chunk_shape=(8, 8),
        codecs=[BytesCodec(), ZstdCodec(level=1)],
        index_codecs=[BytesCodec(), Crc32cCodec()],
    )
    za = zarr.create_array(
        store=str(path), shape=(40, 48), chunks=(16, 16), dtype="int32",
        serializer=serializer, compressors=None, fill_value=0,
    )  # fmt: skip
    za[...] = _data((40, 48), "int32")
    targets.append(Target("v3-sharded", path, "c/0/0", True))
    targets.append(Target("v3-sharded-edge", path, "c/2/2", True))

    for t in targets:
        assert t.file.is_file(), t.file
        t.array = zarrcrop.open(t.path)
        assert t.array.native, (t.name, t.array.fallback_reason)
    return targets


SELECTIONS = [
    ...,
    (slice(3, 29), slice(5, 31)),
    (7, slice(None, None, 3)),
    (slice(None, None, -5), slice(30, 2, -7)),
    (slice(33, 40), slice(33, 48)),
    (0, 0),
]
CROP_STARTS = np.array([[0, 0], [5, 9], [20, 20], [30, 38], [12, 3]], dtype=np.int64)


class UnwrittenOutput(AssertionError):
    """A read succeeded but left output bytes it never wrote."""


def _read_checked(read: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """``read(out)`` into outputs prefilled with 0x00 and 0xFF: a success must write all."""
    results = []
    for prefill in (0x00, 0xFF):
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        out = np.full(nbytes, prefill, dtype=np.uint8).view(dtype).reshape(shape)
        try:
            read(out)
        except ALLOWED:
            results.append(None)
            continue
        results.append(out)
    if (results[0] is None) != (results[1] is None):
        raise UnwrittenOutput("two reads of the same input ended differently")
    if results[0] is not None and results[0].tobytes() != results[1].tobytes():
        raise UnwrittenOutput("a read returned output bytes it never wrote")


def exercise(target: Target, data: bytes) -> None:
    """Writes `data` as the target's chunk file and reads through it; raises on a finding."""
    target.file.write_bytes(data)
    arr = target.array
    for sel in SELECTIONS:
        shape = np.empty(arr.shape, dtype=np.uint8)[sel].shape
        _read_checked(lambda out, sel=sel: arr.read(sel, out=out), shape, arr.dtype)
    _read_checked(
        lambda out: arr.read_crops(CROP_STARTS, (10, 10), out=out),
        (len(CROP_STARTS), 10, 10),
        arr.dtype,
    )
    _read_checked(
        lambda out: arr.read_crops(CROP_STARTS - 4, (12, 14), boundary="fill", out=out),
        (len(CROP_STARTS), 12, 14),
        arr.dtype,
    )


# ------------------------------------------------------------------------------ mutations

INT32_SPECIAL = [0, 1, -1, 2, 15, 16, 17, 255, 0x7FFFFFFF, -0x80000000, 0x7FFFFFF0, 4096, 4095]
UINT64_SPECIAL = [0, 1, 2**63, 2**64 - 1, 2**32, 2**32 - 1, 16, 0x7FFFFFFFFFFFFFFF]


def mutate(rng: random.Random, raw: bytes, sharded: bool) -> bytes:
    buf = bytearray(raw)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(8)
        n = len(buf)
        if op == 0 and n:  # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # truncation
            del buf[rng.randrange(n) :]
        elif op == 2:  # insertion
            i = rng.randrange(n + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 4, 8, 37))))
        elif op == 3 and n >= 16 and not sharded:  # Blosc header int32 fields
            off = rng.choice((4, 8, 12))
            buf[off : off + 4] = struct.pack("<i", rng.choice(INT32_SPECIAL))
        elif op == 4 and n >= 20 and not sharded:  # bstarts and stream sizes
            off = rng.randrange(16, min(n, 16 + 4 * 64) - 3)
            val = rng.choice([*INT32_SPECIAL, rng.randrange(-(2**31), 2**31)])
            buf[off : off + 4] = struct.pack("<i", val)
        elif op == 5 and n >= 8:  # uint64 overwrite, in the index area for shards
            if sharded:
                # index at the end: 8*8 slots of 16 bytes (offset, nbytes) + 4 bytes crc32c
                off = max(0, n - 4 - 16 * rng.randrange(1, 5) + 8 * rng.randrange(2))
                off = min(off, n - 8)
            else:
                off = rng.randrange(n - 7)
            buf[off : off + 8] = struct.pack("<Q", rng.choice(UINT64_SPECIAL))
        elif op == 6 and n:  # byte set
            buf[rng.randrange(n)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == 7 and n >= 2:  # duplicate a slice
            i = rng.randrange(n)
            j = rng.randrange(i, min(n, i + 64) + 1)
            buf[rng.randrange(n) : rng.randrange(n)] = buf[i:j]
    return bytes(buf)


# ------------------------------------------------------------------------------ drivers


def run_simple(targets, seeds, args) -> int:
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    runs = 0
    while True:
        if args.runs is not None and runs >= args.runs:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        i = rng.randrange(len(targets))
        data = mutate(rng, seeds[i], targets[i].sharded)
        try:
            exercise(targets[i], data)
        except Exception:
            save_finding(args, targets[i], data)
            raise
        runs += 1
    return runs


def save_finding(args, target: Target, data: bytes) -> None:
    out = Path(args.artifacts)
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"crash-{target.name}-{len(data)}.bin"
    name.write_bytes(data)
    print(f"finding on target {target.name} (file {target.key}); input saved to {name}",
          file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="time bound")
    parser.add_argument("--runs", type=int, default=None, help="number of inputs")
    parser.add_argument("--seed", type=int, default=0, help="random seed (deterministic)")
    parser.add_argument("--mode", choices=("auto", "atheris", "simple"), default="auto")
    parser.add_argument("--threads", type=int, default=2, help="zarrcrop decode threads")
    parser.add_argument("--artifacts", default="fuzz-findings", help="where findings go")
    args, rest = parser.parse_known_args(argv)
    if args.seconds is None and args.runs is None:
        args.seconds = 60.0

    mode = args.mode
    if mode == "auto":
        # atheris only helps with coverage feedback. Its native instrumentation needs clang,
        # under a preloaded ASan runtime libFuzzer's coverage symbols come from libasan (no
        # feedback at all: the corpus collapses to one byte), and atheris.instrument_all()
        # takes minutes under ASan for Python coverage of little value (the decoding is C++).
        # So the structured mutation loop is the default; --mode atheris runs atheris anyway.
        mode = "simple"
        if os.environ.get("ZARRCROP_FUZZ_ATHERIS") == "1":
            try:
                import atheris  # noqa: F401

                mode = "atheris"
            except ImportError:
                pass

    zarrcrop.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="zarrcrop-fuzz-"))
    try:
        targets = build_targets(root)
        seeds = [t.file.read_bytes() for t in targets]
        # seeds read back correctly
        for t, raw in zip(targets, seeds, strict=True):
            exercise(t, raw)
        start = time.monotonic()
        if mode == "simple":
            runs = run_simple(targets, seeds, args)
        else:
            runs = run_atheris(targets, seeds, args, rest, root)
        elapsed = time.monotonic() - start
        print(
            f"fuzz_chunks: mode={mode} seed={args.seed} runs={runs} seconds={elapsed:.1f} "
            f"execs/s={runs / max(elapsed, 1e-9):.0f} targets={len(targets)}: no findings"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def run_atheris(targets, seeds, args, rest, root: Path) -> int:
    import atheris

    corpus = root / "corpus"
    corpus.mkdir()
    # input = 1 byte target selector + chunk bytes
    for i, raw in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(bytes([i]) + raw)
    counter = {"runs": 0}

    def one_input(data: bytes) -> None:
        if not data:
            return
        target = targets[data[0] % len(targets)]
        payload = data[1:]
        counter["runs"] += 1
        try:
            exercise(target, payload)
        except Exception:
            save_finding(args, target, payload)
            raise

    libfuzzer_args = [sys.argv[0], *rest, f"-seed={args.seed}", "-max_len=65536"]
    if args.seconds:
        libfuzzer_args.append(f"-max_total_time={max(1, int(args.seconds))}")
    if args.runs is not None:
        libfuzzer_args.append(f"-runs={args.runs}")
    libfuzzer_args.append(str(corpus))
    atheris.Setup(libfuzzer_args, one_input)
    try:
        atheris.Fuzz()  # calls exit() when done
    except SystemExit:
        pass
    return counter["runs"]


if __name__ == "__main__":
    sys.exit(main())
