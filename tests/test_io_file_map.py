"""Chunk files read through kept mappings (``zarrcrop.set_map_limit``).

Native reads decode Blosc zstd/lz4 chunk files of 64 KiB or more straight out of read-only
mappings kept between reads. These tests check that such reads equal zarr-python's and the
pread path's, that the cache stays within its limit, that a replaced, resized or truncated file
is never read through a stale mapping, that a file truncated *during* a read gives ChunkError
instead of SIGBUS (and that other SIGBUS still reach their handlers), and fork.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import wait_child
from zarrcrop import _core

# Every array here is meant to be read natively: strict mode (tests/conftest.py).
pytestmark = pytest.mark.native

SHAPE = (4, 3, 256, 256)
CHUNKS = (1, 3, 256, 256)  # 196,608 bytes a chunk, 12 Blosc blocks of 16 KiB
COMPRESSOR = numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE, blocksize=16384)


@pytest.fixture(autouse=True)
def _default_map_limit():
    """Every test starts with the default limit and an empty cache, and leaves them so."""
    zarrcrop.set_map_limit(zarrcrop.DEFAULT_MAP_LIMIT)
    zarrcrop.clear_maps()
    yield
    zarrcrop.set_map_limit(zarrcrop.DEFAULT_MAP_LIMIT)
    zarrcrop.clear_maps()


def _data(seed: int = 7) -> np.ndarray:
    # 4 bits of noise a byte: compresses to about half, so every chunk file is > 64 KiB.
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 16, SHAPE, dtype=np.uint8) * 7).astype(np.uint8)


def _make(tmp_path, seed: int = 7, compressor=COMPRESSOR) -> tuple[str, np.ndarray]:
    path = str(tmp_path / "a.zarr")
    data = _data(seed)
    z = zarr.create_array(
        path, shape=SHAPE, chunks=CHUNKS, dtype="uint8", compressors=compressor, zarr_format=2
    )
    z[...] = data
    return path, data


def _chunk_path(path: str, t: int) -> str:
    return os.path.join(path, f"{t}.0.0.0")


CROPS = [(0, 0, 0, 256, 256), (1, 10, 20, 100, 90), (2, 128, 0, 128, 256), (3, 255, 255, 1, 1)]


def _crops(arr, crops=CROPS) -> list[np.ndarray]:
    return [arr[t, :, y : y + h, x : x + w] for t, y, x, h, w in crops]


def test_chunk_files_are_large_enough_to_be_mapped(tmp_path):
    path, _ = _make(tmp_path)
    for t in range(SHAPE[0]):
        assert os.path.getsize(_chunk_path(path, t)) > 64 * 1024


@pytest.mark.parametrize("cname", ["zstd", "lz4"])
def test_mapped_reads_equal_zarr_python_and_pread(tmp_path, cname):
    compressor = numcodecs.Blosc(cname, 5, numcodecs.Blosc.BITSHUFFLE, blocksize=16384)
    path, data = _make(tmp_path, compressor=compressor)
    arr = zarrcrop.open(path)
    ref = zarr.open_array(path, mode="r")
    mapped = _crops(arr)
    info = zarrcrop.map_info()
    assert info["files"] == SHAPE[0] and info["mapped"] > 0 and info["misses"] == SHAPE[0]
    again = _crops(arr)
    assert zarrcrop.map_info()["hits"] >= SHAPE[0]
    zarrcrop.set_map_limit(0)
    assert zarrcrop.map_info()["files"] == 0
    plain = _crops(arr)
    assert zarrcrop.map_info()["misses"] == info["misses"]  # pread only: no lookups
    for (t, y, x, h, w), a, b, c in zip(CROPS, mapped, again, plain, strict=True):
        expected = ref[t, :, y : y + h, x : x + w]
        np.testing.assert_array_equal(a, expected)
        np.testing.assert_array_equal(b, expected)
        np.testing.assert_array_equal(c, expected)
        np.testing.assert_array_equal(a, data[t, :, y : y + h, x : x + w])


def test_read_crops_through_mappings(tmp_path):
    path, data = _make(tmp_path)
    arr = zarrcrop.open(path)
    rng = np.random.default_rng(3)
    starts = np.stack(
        [
            rng.integers(0, 4, 32),
            np.zeros(32, np.int64),
            rng.integers(0, 129, 32),
            rng.integers(0, 129, 32),
        ],
        axis=1,
    )
    got = arr.read_crops(starts, (1, 3, 128, 128))
    for i, (t, _, y, x) in enumerate(starts):
        np.testing.assert_array_equal(got[i, 0], data[t, :, y : y + 128, x : x + 128])
    assert zarrcrop.map_info()["files"] == SHAPE[0]


def test_limit_bounds_the_mapped_bytes(tmp_path):
    path, data = _make(tmp_path)
    sizes = [os.path.getsize(_chunk_path(path, t)) for t in range(SHAPE[0])]
    zarrcrop.set_map_limit(max(sizes) * 2)  # room for two files
    arr = zarrcrop.open(path)
    for _ in range(2):
        for t in range(SHAPE[0]):
            np.testing.assert_array_equal(arr[t], data[t])
            info = zarrcrop.map_info()
            assert info["mapped"] <= info["limit"] and info["files"] <= 2
    assert zarrcrop.map_info()["hits"] == 0  # round-robin over 4 files, room for 2: all miss
    # Lowering the limit unmaps at once; a file larger than the limit is read with pread.
    zarrcrop.set_map_limit(min(sizes) - 1)
    assert zarrcrop.map_info()["files"] == 0
    np.testing.assert_array_equal(arr[1], data[1])
    assert zarrcrop.map_info()["files"] == 0


def test_set_map_limit_validates():
    with pytest.raises(ValueError, match="map limit"):
        zarrcrop.set_map_limit(-1)
    with pytest.raises(TypeError):
        zarrcrop.set_map_limit(1.5)  # type: ignore[arg-type]
    zarrcrop.set_map_limit(12345)
    assert zarrcrop.get_map_limit() == 12345
    assert zarrcrop.map_info()["limit"] == 12345


def test_replaced_chunk_is_read_anew(tmp_path):
    """zarr-python rewrites a chunk (new file, rename): the next read maps the new file."""
    path, data = _make(tmp_path)
    arr = zarrcrop.open(path)
    np.testing.assert_array_equal(arr[1], data[1])
    new = _data(99)
    zarr.open_array(path, mode="r+")[1] = new[1]
    np.testing.assert_array_equal(arr[1], new[1])
    np.testing.assert_array_equal(arr[1], zarr.open_array(path, mode="r")[1])


@pytest.mark.parametrize("how", ["shorter", "longer"])
def test_chunk_rewritten_in_place_with_another_size(tmp_path, how):
    """cp onto a chunk file (truncate, write): same inode, new size; never the old mapping."""
    path, data = _make(tmp_path)
    other_path, other = _make(tmp_path / "other", seed=5 if how == "shorter" else 11)
    arr = zarrcrop.open(path)
    np.testing.assert_array_equal(arr[2], data[2])
    replacement = Path(_chunk_path(other_path, 2)).read_bytes()
    if how == "longer":
        # The same chunk stored less compressed (another clevel): a longer file.
        raw = numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE, blocksize=8192)
        replacement = raw.encode(np.ascontiguousarray(other[2]))
    target = _chunk_path(path, 2)
    before = os.stat(target)
    with open(target, "r+b") as f:  # in place: the inode stays
        f.truncate(0)
        f.write(replacement)
    assert os.stat(target).st_ino == before.st_ino
    assert os.stat(target).st_size != before.st_size
    np.testing.assert_array_equal(arr[2], other[2])


def test_truncated_chunk_between_reads_raises(tmp_path):
    path, data = _make(tmp_path)
    arr = zarrcrop.open(path)
    np.testing.assert_array_equal(arr[3], data[3])
    target = _chunk_path(path, 3)
    os.truncate(target, os.path.getsize(target) // 2)
    with pytest.raises(zarrcrop.ChunkError, match=r"3\.0\.0\.0"):
        arr[3, :, 200:, 200:]
    # Not compared with zarr-python here: numcodecs' Blosc decompress is not given the
    # buffer's length and reads past the truncated end, so it raises or returns garbage
    # depending on what lies there (seen both ways in this test).


# --- truncation during a read: the SIGBUS guard ------------------------------------------------


def _file(tmp_path, size: int = 1 << 20) -> str:
    p = str(tmp_path / "f.bin")
    with open(p, "wb") as f:
        f.write(bytes(range(256)) * (size // 256))
    return p


def test_probe_reads_through_the_mapping(tmp_path):
    p = _file(tmp_path)
    assert _core._testing.mapped_read_probe(p, 1000, 4) == bytes([232, 233, 234, 235])
    assert zarrcrop.map_info()["files"] == 1


def test_file_truncated_under_a_mapped_read_raises_chunk_error(tmp_path):
    p = _file(tmp_path)
    with pytest.raises(zarrcrop.ChunkError, match="changed size while it was read"):
        _core._testing.mapped_read_probe(p, 600_000, 64, shrink_to=4096)
    # The damaged mapping is never handed out again: the next read maps the file anew.
    assert _core._testing.mapped_read_probe(p, 0, 4096) == bytes(range(256)) * 16
    assert zarrcrop.map_info()["mapped"] == 4096


def test_truncation_inside_the_last_page_raises_chunk_error(tmp_path):
    """Bytes past a new end within the last page read as zeros, without SIGBUS: a read sees the
    size change on its final fstat."""
    path, _ = _make(tmp_path)
    arr = zarrcrop.open(path)
    arr[0]
    target = _chunk_path(path, 0)
    size = os.path.getsize(target)
    # Map the file at its full size (a read), then shrink it by a few bytes only, as if
    # between that read's open and its decoding: the probe stands in for the decoder.
    with pytest.raises(zarrcrop.ChunkError, match="changed size"):
        _core._testing.mapped_read_probe(target, size - 16, 16, shrink_to=size - 8)


_SIGBUS_SCRIPT = textwrap.dedent(
    """
    import faulthandler, mmap, os, sys, tempfile
    import zarrcrop
    from zarrcrop import _core

    mode = sys.argv[1]
    d = tempfile.mkdtemp()
    p = os.path.join(d, "f")
    with open(p, "wb") as f:
        f.write(b"x" * (1 << 20))
    _core._testing.mapped_read_probe(p, 0, 4)  # installs zarrcrop's SIGBUS handler
    if mode == "faulthandler-after-foreign":
        faulthandler.enable()  # over zarrcrop's handler, with zarrcrop's as its previous
        _core._testing.mapped_read_probe(p, 0, 4)  # zarrcrop's goes back on top, faulthandler below
    if mode == "faulthandler-after":
        faulthandler.enable()  # replaces it; the next mapped read puts it back on top
        try:
            _core._testing.mapped_read_probe(p, 600_000, 4, shrink_to=4096)
        except zarrcrop.ChunkError:
            print("ChunkError", flush=True)
            sys.exit(0)
        sys.exit(3)
    # A SIGBUS that is not zarrcrop's: Python's own mmap of a file truncated under it.
    q = os.path.join(d, "g")
    with open(q, "wb") as f:
        f.write(b"y" * (1 << 20))
    f = open(q, "rb")
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    os.truncate(q, 4096)
    print("touching", flush=True)
    m[600_000]
    print("survived", flush=True)
    """
)


def _run_sigbus_script(mode: str, *python_flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python_flags, "-c", _SIGBUS_SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=60,  # a handler loop would hang here
    )


def _killed_by_sigbus(proc: subprocess.CompletedProcess) -> bool:
    """Died of the SIGBUS, or the handler that was there before zarrcrop's reported it (the
    sanitizer CI job runs Python with AddressSanitizer's handler installed first)."""
    return proc.returncode == -signal.SIGBUS or "AddressSanitizer: BUS" in proc.stderr


def test_other_sigbus_still_kills_the_process():
    proc = _run_sigbus_script("foreign")
    assert "touching" in proc.stdout and "survived" not in proc.stdout
    assert _killed_by_sigbus(proc), f"rc {proc.returncode}\n{proc.stderr}"


def test_other_sigbus_reaches_faulthandler():
    proc = _run_sigbus_script("foreign", "-X", "faulthandler")
    assert "survived" not in proc.stdout
    assert _killed_by_sigbus(proc), f"rc {proc.returncode}\n{proc.stderr}"
    assert "Bus error" in proc.stderr  # faulthandler's report: the chain reached it


def test_other_sigbus_with_faulthandler_enabled_later_does_not_loop():
    """faulthandler enabled after zarrcrop hands SIGBUS back to zarrcrop's handler after its
    report; the chain must end there (one report, then death), not call it again forever."""
    proc = _run_sigbus_script("faulthandler-after-foreign")
    assert "survived" not in proc.stdout
    assert _killed_by_sigbus(proc), f"rc {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stderr.count("Fatal Python error: Bus error") == 1, proc.stderr[-2000:]


def test_guard_stays_on_top_of_a_later_handler():
    proc = _run_sigbus_script("faulthandler-after")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ChunkError" in proc.stdout
    assert "Fatal Python error" not in proc.stderr


_RACE_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    import zarrcrop

    path, chunk_paths = sys.argv[1], sys.argv[2:]
    originals = [open(p, "rb").read() for p in chunk_paths]
    expected = np.load(path + ".npy")
    stop = threading.Event()

    def rewrite():
        # cp onto the chunk files, over and over: truncate to 0, write the same bytes back.
        while not stop.is_set():
            for p, b in zip(chunk_paths, originals):
                with open(p, "r+b") as f:
                    f.truncate(0)
                    f.write(b[: len(b) // 2])
                    f.flush()
                    f.write(b[len(b) // 2 :])

    writer = threading.Thread(target=rewrite)
    writer.start()
    arr = zarrcrop.open(path)
    rng = np.random.default_rng(0)
    ok = errors = 0
    try:
        for _ in range(400):
            t = int(rng.integers(0, 4))
            y, x = (int(v) for v in rng.integers(0, 129, 2))
            try:
                got = arr[t, :, y : y + 128, x : x + 128]
            except (zarrcrop.ChunkError, OSError):
                errors += 1
                continue
            if not np.array_equal(got, expected[t, :, y : y + 128, x : x + 128]):
                print("WRONG", t, y, x, flush=True)
                sys.exit(2)
            ok += 1
    finally:
        stop.set()
        writer.join()
    print("ok", ok, "errors", errors, flush=True)
    """
)


def test_chunks_truncated_and_rewritten_during_reads(tmp_path):
    """Another thread keeps truncating and rewriting chunk files in place (same bytes) while
    crops are read: every read is right or raises ChunkError/OSError; no SIGBUS, no wrong data.
    """
    path, data = _make(tmp_path)
    np.save(path + ".npy", data)
    chunk_paths = [_chunk_path(path, t) for t in range(SHAPE[0])]
    proc = subprocess.run(
        [sys.executable, "-c", _RACE_SCRIPT, path, *chunk_paths],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "ok" in proc.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_reads_through_its_own_mappings(tmp_path):
    path, data = _make(tmp_path)
    arr = zarrcrop.open(path)
    np.testing.assert_array_equal(arr[0], data[0])  # the parent holds a mapping
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            fine = all(np.array_equal(arr[t], data[t]) for t in range(SHAPE[0]))
            info = zarrcrop.map_info()
            code = 0 if fine and info["files"] == SHAPE[0] and info["hits"] == 0 else 1
        finally:
            os._exit(code)
    assert wait_child(pid, 120) == 0
    np.testing.assert_array_equal(arr[1], data[1])


def test_sharded_chunks_are_read_through_the_shard_mapping(tmp_path):
    """Inner chunks of a shard are read at their offsets in one mapping of the shard file."""
    from zarr.codecs import BloscCodec

    path = str(tmp_path / "sharded.zarr")
    data = _data(3)
    z = zarr.create_array(
        path,
        shape=SHAPE,
        chunks=CHUNKS,  # inner chunks of > 64 KiB compressed: read block by block
        shards=(2, 3, 256, 256),
        dtype="uint8",
        compressors=BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle", blocksize=16384),
        zarr_format=3,
    )
    z[...] = data
    arr = zarrcrop.open(path)
    ref = zarr.open_array(path, mode="r")
    for t, y, x, h, w in CROPS:
        np.testing.assert_array_equal(
            arr[t, :, y : y + h, x : x + w], ref[t, :, y : y + h, x : x + w]
        )
    info = zarrcrop.map_info()
    assert info["files"] == 2  # two shard files, each mapped once
    assert info["hits"] > 0


@pytest.mark.parametrize("path_kind", ["mapped", "pread"])
def test_stream_size_running_past_its_block_raises(tmp_path, path_kind):
    """A stream size field pointing one byte past its block is refused where the block is
    decoded (decode_block_streams reads and checks each size once), in mappings and buffers."""
    path, data = _make(tmp_path)
    target = _chunk_path(path, 1)
    raw = bytearray(Path(target).read_bytes())
    start0 = int.from_bytes(raw[16:20], "little")
    start1 = int.from_bytes(raw[20:24], "little")
    assert start1 > start0  # C-Blosc writes its blocks in order
    raw[start0 : start0 + 4] = (start1 - start0 - 4 + 1).to_bytes(4, "little")
    with open(target, "wb") as f:
        f.write(raw)
    if path_kind == "pread":
        zarrcrop.set_map_limit(0)
    arr = zarrcrop.open(path)
    np.testing.assert_array_equal(arr[1, 2, 200:, :], data[1, 2, 200:, :])  # other blocks
    with pytest.raises(zarrcrop.ChunkError, match=r"1\.0\.0\.0.*block 0 runs past its end"):
        arr[1, 0, :8, :8]  # in block 0 only
    assert zarrcrop.map_info()["files"] == (1 if path_kind == "mapped" else 0)
