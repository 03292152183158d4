"""Reads while another process rewrites chunks with zarr-python; a leak check over repeated reads.

The writer process overwrites each chunk in turn with one of two uniform values (pattern A or
pattern B of that chunk). Every read of a chunk's region must give all-A or all-B for that
chunk, or raise ``zarrcrop.ChunkError`` / ``OSError`` (a torn file), never a crash, a hang or
mixed / other values.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import rss_bytes, rss_check
from zarr.codecs import Crc32cCodec, ZstdCodec

SHAPE = (64, 80)
CHUNKS = (16, 16)
GRID = (SHAPE[0] // CHUNKS[0], SHAPE[1] // CHUNKS[1])
WRITE_SECONDS = 3.0
N_READERS = 4
JOIN_TIMEOUT_S = 120


def _pattern(which: str) -> np.ndarray:
    """Per-chunk uniform values: chunk (i, j) holds 100 + k (A) or 5000 + k (B), k its index."""
    base = 100 if which == "A" else 5000
    k = np.arange(GRID[0] * GRID[1], dtype=np.uint16).reshape(GRID) + base
    return np.kron(k, np.ones(CHUNKS, dtype=np.uint16))


LAYOUTS = {
    "v2-blosc-lz4": dict(
        zarr_format=2, compressors=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE, 256)
    ),
    "v3-zstd-crc32c": dict(zarr_format=3, compressors=[ZstdCodec(level=1), Crc32cCodec()]),
}

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import zarr

    path, seconds = sys.argv[1], float(sys.argv[2])
    a, b = np.load(sys.argv[3]), np.load(sys.argv[4])
    za = zarr.open_array(path, mode="r+")
    ch = za.chunks
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        src = b if n % 2 == 0 else a
        for i in range(0, za.shape[0], ch[0]):
            for j in range(0, za.shape[1], ch[1]):
                region = (slice(i, i + ch[0]), slice(j, j + ch[1]))
                za[region] = src[region]
        n += 1
    print(n)
    """
)


def _check_chunks(result: np.ndarray, sel: tuple[slice, slice], a, b) -> None:
    """Every chunk's part of `result` (the crop `sel`) is all-A or all-B for that chunk."""
    r0, c0 = sel[0].start, sel[1].start
    for ci in range(r0 // CHUNKS[0], (sel[0].stop - 1) // CHUNKS[0] + 1):
        for cj in range(c0 // CHUNKS[1], (sel[1].stop - 1) // CHUNKS[1] + 1):
            rows = slice(max(ci * CHUNKS[0], r0), min((ci + 1) * CHUNKS[0], sel[0].stop))
            cols = slice(max(cj * CHUNKS[1], c0), min((cj + 1) * CHUNKS[1], sel[1].stop))
            part = result[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
            ok = np.array_equal(part, a[rows, cols]) or np.array_equal(part, b[rows, cols])
            assert ok, f"chunk ({ci}, {cj}) is neither pattern: {np.unique(part)}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reads_during_rewrites_see_whole_chunks_or_errors(tmp_path, layout):
    a, b = _pattern("A"), _pattern("B")
    path = tmp_path / "rw.zarr"
    za = zarr.create_array(
        store=str(path), shape=SHAPE, chunks=CHUNKS, dtype="uint16", fill_value=0,
        **LAYOUTS[layout],
    )  # fmt: skip
    za[...] = a
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    ca = zarrcrop.open(path)
    assert ca.native, ca.fallback_reason

    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(WRITE_SECONDS),
         str(tmp_path / "a.npy"), str(tmp_path / "b.npy")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stats = {"reads": 0, "errors": 0}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while writer.poll() is None:
                h, w = rng.integers(1, 40, size=2)
                r, c = rng.integers(0, SHAPE[0] - h + 1), rng.integers(0, SHAPE[1] - w + 1)
                sel = (slice(int(r), int(r + h)), slice(int(c), int(c + w)))
                try:
                    if rng.random() < 0.5:
                        result = ca[sel]
                    else:
                        starts = np.array([[r, c]], dtype=np.int64)
                        result = ca.read_crops(starts, (int(h), int(w)))[0]
                except (zarrcrop.ChunkError, OSError):
                    with lock:
                        stats["errors"] += 1
                    continue
                _check_chunks(result, sel, a, b)
                with lock:
                    stats["reads"] += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader, args=(s,), daemon=True) for s in range(N_READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    try:
        out, err = writer.communicate(timeout=JOIN_TIMEOUT_S)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert not any(t.is_alive() for t in threads), "reader threads did not finish"
    assert writer.returncode == 0, err
    if failures:
        raise failures[0]
    assert int(out.strip()) >= 2, "the writer did not rewrite the array at least twice"
    assert stats["reads"] > 0, stats
    # after the writer is done the array is consistent again and reads without error
    final = ca[...]
    _check_chunks(final, (slice(0, SHAPE[0]), slice(0, SHAPE[1])), a, b)


@rss_check
def test_repeated_reads_do_not_grow_rss(tmp_path):
    path = tmp_path / "leak.zarr"
    za = zarr.create_array(
        store=str(path), shape=(96, 96), chunks=(16, 16), dtype="float32", zarr_format=2,
        compressors=numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE), fill_value=0,
    )  # fmt: skip
    za[...] = np.arange(96 * 96, dtype=np.float32).reshape(96, 96)
    (path / "1.1").write_bytes(b"corrupt")  # errors must not leak either
    ca = zarrcrop.open(path)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 96 - 20, size=(2000, 2))

    def round_() -> None:
        for r, c in starts:
            try:
                ca[int(r) : int(r) + 20, int(c) : int(c) + 20]
            except zarrcrop.ChunkError:
                pass
        for i in range(0, len(starts), 100):
            try:
                ca.read_crops(starts[i : i + 100], (20, 20))
            except zarrcrop.ChunkError:
                pass

    round_()  # warm up: thread pool, allocator arenas
    before = rss_bytes()
    round_()
    round_()
    growth = rss_bytes() - before
    assert growth < 4 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 2 x 2000 reads"
