"""Resources a native read takes and keeps: planning memory, scratch after a read, the shard
index cache, file descriptors, threads, private copies of the arguments, and memory that must
not grow over repeated reads or dropped readers.

Memory and resource-limit cases run in their own process (a fresh peak RSS, limits that do
not leak into the suite), each with a timeout.
"""

from __future__ import annotations

import gc
import json
import os
import textwrap
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import rss_bytes, rss_check, run_python

ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
needs_plain_rss = pytest.mark.skipif(ASAN, reason="ASan's quarantine and shadow memory hide RSS")


def run_script(code: str, tmp_path: Path, timeout: float = 240) -> dict:
    """Runs `code` (which prints one JSON line last) with sys.argv[1] = tmp_path."""
    proc = run_python(PRELUDE + textwrap.dedent(code), tmp_path, timeout)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {out}\nstderr: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


PRELUDE = """
import gc, json, os, resource, sys, threading, time
import numpy as np, numcodecs, zarr, zarrcrop
MiB = 1 << 20
root = sys.argv[1]

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
"""


# -------------------------------------------------------------------------- planning memory

PLANNING = """
path = os.path.join(root, "grid.zarr")
z = zarr.open_array(path, mode="w", shape={shape}, chunks={chunks}, dtype="uint8",
                    zarr_format=2, fill_value=1)
a = zarrcrop.open(path)
starts = np.ascontiguousarray({starts})
a.read_crops(starts[:2], {crop})  # warm: pool, imports
gc.collect()
before = peak()
out = a.read_crops(starts, {crop})
grew = peak() - before
print(json.dumps({{"grew": grew, "out": out.nbytes, "ok": bool((out == 1).all()),
                   "shape": list(out.shape)}}))
"""


@needs_plain_rss
def test_planning_memory_for_many_tiny_crops(tmp_path):
    # 300,000 crops of 1x1: a 300 KB result. Before: +455 MiB of stitches sized for 64
    # dimensions, all kept at once.
    rng = "np.random.default_rng(0).integers(0, 1000, size=(300_000, 2))"
    result = run_script(
        PLANNING.format(shape=(1000, 1000), chunks=(10, 10), starts=rng, crop=(1, 1)), tmp_path
    )
    assert result["ok"] and result["shape"] == [300_000, 1, 1]
    # The private copy of the starts (4.8 MB), the crop order (2.4 MB), one window's plan.
    assert result["grew"] < result["out"] + 24 * 2**20, result


@needs_plain_rss
def test_planning_memory_for_crops_over_one_element_chunks(tmp_path):
    # 16 crops of (1, 3, 64, 64) over chunks of one element: 196,608 pieces. Before: +328 MiB.
    starts = "[[t % 4, 0, 8 * t, 4 * t] for t in range(16)]"
    result = run_script(
        PLANNING.format(
            shape=(4, 3, 192, 128), chunks=(1, 1, 1, 1), starts=starts, crop=(1, 3, 64, 64)
        ),
        tmp_path,
    )
    assert result["ok"] and result["shape"] == [16, 1, 3, 64, 64]
    assert result["grew"] < result["out"] + 16 * 2**20, result


def test_windowed_planning_matches_zarr_python(tmp_path):
    # More pieces than one planning window (16,384), crops in random order sharing chunks:
    # the windows and the crop order must not change what is read.
    path = tmp_path / "w.zarr"
    za = zarr.create_array(
        store=str(path), shape=(300, 400), chunks=(7, 9), dtype="int32", zarr_format=2,
        fill_value=-1,
    )  # fmt: skip
    data = np.arange(300 * 400, dtype=np.int32).reshape(300, 400)
    za[:200] = data[:200]  # the rest stays unwritten: fill value
    a = zarrcrop.open(path)
    rng = np.random.default_rng(5)
    starts = np.stack([rng.integers(-20, 300, 3000), rng.integers(-20, 400, 3000)], axis=1)
    got = a.read_crops(starts, (30, 40), boundary="fill", fill=-7)
    full = np.full((350, 460), -7, dtype=np.int32)  # 20 before, a crop after
    full[20:320, 20:420] = za[:]
    for i, (y, x) in enumerate(starts.tolist()):
        np.testing.assert_array_equal(got[i], full[y + 20 : y + 50, x + 20 : x + 60])
    # And strided reads spanning many windows of chunk tasks.
    np.testing.assert_array_equal(a[1:299:2, ::-3], za[:][1:299:2, ::-3])


DECODE_SECONDS = """
path = os.path.join(root, "d.zarr")
zarr.open_array(path, mode="w", shape=(2000, 2000), chunks=(1000, 1000), dtype="uint8",
                zarr_format=2)
a = zarrcrop.open(path)
starts = np.zeros((600, 2), dtype=np.int64)
a.decode_seconds(starts[:1], (1000, 1000), shared=True)
gc.collect()
before = peak()
a.decode_seconds(starts, (1000, 1000), shared=True)
a.decode_seconds(starts, (1000, 1000), shared=False)
print(json.dumps({"grew": peak() - before}))
"""


@needs_plain_rss
def test_decode_seconds_needs_one_crop_of_memory(tmp_path):
    # Before: shared=True allocated the whole batch's output (600 MB here, 3 GB for 3000).
    result = run_script(DECODE_SECONDS, tmp_path)
    assert result["grew"] < 64 * 2**20, result


# ----------------------------------------------------------------------- memory after reads

SCRATCH = """
path = os.path.join(root, "big.zarr")
n = 64 * MiB
z = zarr.open_array(path, mode="w", shape=(4 * n,), chunks=(n,), dtype="uint8", zarr_format=2,
                    compressor=numcodecs.Blosc(cname="{cname}", clevel=1, shuffle=0))
z[:] = 1  # not the fill value: every chunk is written (tiny files, 64 MiB decoded)
small = os.path.join(root, "small.zarr")
zarr.open_array(small, mode="w", shape=(64,), chunks=(8,), dtype="uint8", zarr_format=2)[:] = 1
zarrcrop.set_num_threads(4)
a = zarrcrop.open(path)
zarrcrop.open(small)[:]  # the pool started, small buffers only
gc.collect()
base = rss()
for _ in range(3):
    a[7::n]  # 1 byte from each 64 MiB chunk: each chunk on a thread of its own
time.sleep(0.2)  # pool workers give their scratch back when they go idle
kept = rss() - base
print(json.dumps({{"kept": kept}}))
"""


@needs_plain_rss
@pytest.mark.parametrize("cname", ["blosclz", "zlib"])
def test_scratch_is_released_after_a_read(tmp_path, cname):
    # Before: grow-only decode buffers, zero-filled to the chunk size, stayed with every
    # thread that had decoded a large chunk (+1 GiB after 4 bytes of four 512 MiB chunks).
    result = run_script(SCRATCH.format(cname=cname), tmp_path)
    assert result["kept"] < 16 * 2**20, result  # twice what a thread may keep (8 MiB)


INDEX_CACHE = """
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
path = os.path.join(root, "sharded.zarr")
inner = 1 << 20  # 16 MiB of index per shard
serializer = ShardingCodec(chunk_shape=(1,), codecs=[BytesCodec()],
                           index_codecs=[BytesCodec(), Crc32cCodec()])
za = zarr.create_array(store=path, shape=(8 * inner,), chunks=(inner,), dtype="uint8",
                       serializer=serializer, compressors=None, fill_value=0)
for s in range(8):
    za[s * inner] = s + 1
a = zarrcrop.open(path)
limit = zarrcrop.get_index_cache_limit()
gc.collect()
base = rss()
values = [int(a[s * inner]) for s in range(8)]
info = zarrcrop.index_cache_info()
kept = rss() - base
zarrcrop.set_index_cache_limit(0)
none_kept = zarrcrop.index_cache_info()
zarrcrop.set_index_cache_limit(70 * MiB)  # room for 4
zarrcrop.clear_index_cache()
again = [int(a[s * inner]) for s in range(4)] + [int(a[s * inner]) for s in range(4)]
info2 = zarrcrop.index_cache_info()
print(json.dumps({"values": values, "again": again, "info": info, "kept": kept, "limit": limit,
                  "none_kept": none_kept, "info2": info2}))
"""


@needs_plain_rss
def test_shard_index_cache_is_bounded_in_bytes(tmp_path):
    # Before: up to 256 indexes of any size per array (+514 MiB after one byte from each of
    # 8 shards with 64 MiB indexes).
    result = run_script(INDEX_CACHE, tmp_path)
    assert result["values"] == list(range(1, 9))
    assert result["again"] == list(range(1, 5)) * 2
    assert result["info"]["size"] <= result["limit"]
    assert result["kept"] < result["limit"] + 16 * 2**20, result
    assert result["none_kept"]["entries"] == 0 and result["none_kept"]["size"] == 0
    # With room for them, 4 indexes are read once and then found.
    assert result["info2"]["entries"] == 4
    assert result["info2"]["hits"] == 4 and result["info2"]["misses"] == 4


def test_index_cache_settings_are_validated():
    with pytest.raises(ValueError):
        zarrcrop.set_index_cache_limit(-1)
    with pytest.raises(TypeError):
        zarrcrop.set_index_cache_limit(1.5)
    old = zarrcrop.get_index_cache_limit()
    try:
        zarrcrop.set_index_cache_limit(1234)
        assert zarrcrop.get_index_cache_limit() == 1234
        assert zarrcrop.index_cache_info()["limit"] == 1234
    finally:
        zarrcrop.set_index_cache_limit(old)
    assert zarrcrop.DEFAULT_INDEX_CACHE_LIMIT == 32 * 2**20


# ----------------------------------------------------------------------- file descriptors

OPEN_FILES = """
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
path = os.path.join(root, "many.zarr")
rng = np.random.default_rng(3)
data = rng.integers(0, 16, size=(300, 256, 512), dtype=np.uint8)  # ~64 KiB compressed chunks
z = zarr.open_array(path, mode="w", shape=data.shape, chunks=(1, 256, 512), dtype="uint8",
                    zarr_format=2, compressor=numcodecs.Blosc(cname="zstd", clevel=1, shuffle=0))
z[:] = data
zarrcrop.set_num_threads(2)
a = zarrcrop.open(path)
errors = []
good = []
def reader(k):
    for _ in range(3):
        try:
            sel = (slice(None), slice(k * 8, k * 8 + 64), slice(None, None, 7))
            good.append(bool(np.array_equal(a[sel], data[sel])))
        except OSError as e:
            errors.append(str(e))
threads = [threading.Thread(target=reader, args=(k,)) for k in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"errors": errors[:3], "n_errors": len(errors), "good": good}))
"""


def test_reads_succeed_under_a_low_open_files_limit(tmp_path):
    # Before: a native read held up to 256 chunk files open; with RLIMIT_NOFILE 1024 and 6
    # threads reading across 300 chunks a third of the reads failed with EMFILE.
    result = run_script(OPEN_FILES, tmp_path)
    assert result["n_errors"] == 0, result["errors"]
    assert result["good"] == [True] * 18


OUT_OF_FILES = """
path = os.path.join(root, "few.zarr")
z = zarr.open_array(path, mode="w", shape=(4, 64), chunks=(1, 64), dtype="uint8", zarr_format=2)
z[:] = 1
a = zarrcrop.open(path)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
held = []
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
t0 = time.perf_counter()
try:
    a[:]
    outcome = "read"
except OSError as e:
    outcome = [e.errno, str(e)]
took = time.perf_counter() - t0
for fd in held: os.close(fd)
print(json.dumps({"outcome": outcome, "took": took, "after": int(a[:].sum())}))
"""


def test_a_process_out_of_descriptors_gets_emfile_naming_the_chunk(tmp_path):
    import errno

    result = run_script(OUT_OF_FILES, tmp_path)
    assert result["outcome"] != "read"
    code, message = result["outcome"]
    assert code == errno.EMFILE
    assert "few.zarr" in message and "0.0" in message
    assert result["took"] < 10
    assert result["after"] == 4 * 64


# ------------------------------------------------------------------------------- threads

THREADS = """
import warnings
path = os.path.join(root, "t.zarr")
# More chunks than threads: the read runs its chunks on the pool (and so starts it).
z = zarr.open_array(path, mode="w", shape=(512, 8), chunks=(1, 8), dtype="uint8", zarr_format=2)
z[:] = 5
a = zarrcrop.open(path)
a[:1]
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
# Room for a few thread stacks (8 MiB each), not for 200.
resource.setrlimit(resource.RLIMIT_AS, (vm + 96 * MiB, resource.RLIM_INFINITY))
zarrcrop.set_num_threads(200)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ok = [int(a[:].sum()) for _ in range(3)] + [int(a.read_crops([[0, 0]], (8, 8)).sum())]
print(json.dumps({"ok": ok, "warnings": [str(w.message) for w in caught
                                           if issubclass(w.category, RuntimeWarning)],
                  "threads": zarrcrop.get_num_threads()}))
"""


def test_pool_runs_with_the_threads_it_could_start(tmp_path):
    if ASAN:
        pytest.skip("ASan reserves more address space than RLIMIT_AS leaves here")
    # Before: every read raised "RuntimeError: Resource temporarily unavailable".
    result = run_script(THREADS, tmp_path)
    assert result["ok"] == [5 * 512 * 8] * 3 + [5 * 64]
    assert len(result["warnings"]) == 1, result["warnings"]
    assert "could only start" in result["warnings"][0]
    assert "of 200 native threads" in result["warnings"][0]


# -------------------------------------------------------------------- argument ownership

STARTS_RACE = """
path = os.path.join(root, "r.zarr")
data = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
z = zarr.open_array(path, mode="w", shape=data.shape, chunks=(16, 16), dtype="uint16",
                    zarr_format=2)
z[:] = data
a = zarrcrop.open(path)
n = 64
A = np.tile([[0, 0]], (n, 1)).astype(np.int64)
B = np.tile([[192, 192]], (n, 1)).astype(np.int64)
starts = A.copy()  # C-contiguous int64: handed to the core as it is
stop = threading.Event()
def flip():
    k = 0
    while not stop.is_set():
        starts[:] = B if k % 2 else A
        k += 1
threading.Thread(target=flip, daemon=True).start()
crop_a, crop_b = data[:64, :64], data[192:, 192:]
bad = 0
t0 = time.perf_counter()
calls = 0
# At least 20 calls (sanitizer builds on a slow machine make ~3 a second), at most 30 s.
def more():
    elapsed = time.perf_counter() - t0
    return calls < 3000 and elapsed < 30.0 and (calls < 20 or elapsed < 3.0)
while more():
    out = a.read_crops(starts, (64, 64))
    calls += 1
    # Every crop of one call comes from one snapshot of starts: all A or all B.
    if not (all(np.array_equal(c, crop_a) for c in out) or
            all(np.array_equal(c, crop_b) for c in out)):
        bad += 1
    a.decode_seconds(starts, (64, 64), shared=True)
stop.set()
print(json.dumps({"bad": bad, "calls": calls}))
"""


def test_read_crops_uses_a_private_copy_of_starts(tmp_path):
    # Before: the planner read the caller's starts again after checking them, with the GIL
    # released: a thread changing them gave misplaced output, then SIGSEGV / SIGABRT.
    result = run_script(STARTS_RACE, tmp_path)
    assert result["calls"] >= 5, result
    assert result["bad"] == 0, result


# ------------------------------------------------------------------------------- leaks


# Found by the native leak check (fuzz/native/leak_check.cpp under LeakSanitizer and valgrind):
# ShardReader had no destructor, so every reader of a sharded array leaked its cache of parsed
# shard indexes (up to 256 indexes of 16 bytes per inner chunk) when dropped.
@rss_check
def test_dropped_sharded_readers_free_their_shard_indexes(tmp_path):
    # One shard of 64 x 64 = 4096 inner chunks: a 64 KiB index, parsed and cached per reader.
    path = tmp_path / "sharded.zarr"
    za = zarr.create_array(
        store=str(path), shape=(256, 256), chunks=(4, 4), shards=(256, 256), dtype="uint8",
        zarr_format=3, compressors=None, fill_value=0,
    )  # fmt: skip
    za[...] = np.arange(256 * 256, dtype=np.uint8).reshape(256, 256)

    def open_read_drop(n: int) -> None:
        for _ in range(n):
            ca = zarrcrop.open(path)
            assert ca[5, 7] == za[5, 7]
            del ca
        gc.collect()

    open_read_drop(20)  # warm up
    before = rss_bytes()
    open_read_drop(300)  # leaked about 300 x 64 KiB (18.7 MiB measured) before the fix
    growth = rss_bytes() - before
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 300 sharded readers"


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
