"""Threads and processes: the native thread count (set_num_threads), Python threads reading one
array or each their own, reads in a child forked after (or while) the parent read, CropArrays
pickled to spawned processes, and reads while another process rewrites the chunks.

Ctrl-C and interpreter exit: tests/test_interrupt_exit.py; memory, descriptors and thread
limits: tests/test_resource_bounds.py.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop
from helpers import ArraySpec, Blosc, assert_same, create_array, make_data, random_crop
from zarr.codecs import Crc32cCodec, ZstdCodec

N_THREADS = 8
CROPS_PER_THREAD = 60
JOIN_TIMEOUT_S = 120

SPEC = ArraySpec(
    zarr_format=2,
    shape=(3, 61, 77),
    chunks=(2, 16, 12),
    dtype="uint16",
    codec=Blosc("lz4", 5, "shuffle"),
    fill_value=7,
)
MISSING = [(0, 1, 1), (1, 3, 6), (0, 0, 0)]


@pytest.fixture
def shared(tmp_path):
    """(path, expected full contents) of a native array with some missing chunks."""
    path = tmp_path / "shared.zarr"
    data = make_data(SPEC.shape, SPEC.dtype, seed=21, mode="runs")
    za = create_array(path, SPEC, data, missing=MISSING)
    return path, np.asarray(za[...])


def run_threads(targets) -> None:
    """Run callables in daemon threads; re-raise the first failure; fail on a hang."""
    errors: list[BaseException] = []

    def wrap(fn):
        def runner():
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return runner

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "reader threads did not finish (deadlock?)"
    if errors:
        raise errors[0]


def crop_reader(ca, expected, seed, use_out):
    def read_many():
        rng = np.random.default_rng(seed)
        for _ in range(CROPS_PER_THREAD):
            sel = random_crop(rng, expected.shape)
            if rng.integers(0, 4) == 0:
                sel = (int(rng.integers(0, expected.shape[0])), *sel[1:])
            want = expected[sel]
            if use_out:
                out = np.empty(want.shape, dtype=want.dtype)
                assert ca.read(sel, out=out) is out
                got = out
            else:
                got = ca[sel]
            assert_same(got, want)

    return read_many


# --------------------------------------------------------------------------------------
# The native thread count
# --------------------------------------------------------------------------------------


def test_default_num_threads_is_cpu_affinity():
    code = "import os, zarrcrop; print(zarrcrop.get_num_threads(), len(os.sched_getaffinity(0)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARRCROP")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert out[0] == out[1]


def test_set_and_get_num_threads():
    zarrcrop.set_num_threads(3)
    assert zarrcrop.get_num_threads() == 3
    zarrcrop.set_num_threads(1)
    assert zarrcrop.get_num_threads() == 1


@pytest.mark.parametrize("n", [0, -1, 1025, 2**40, 2**64])
def test_set_num_threads_rejects_out_of_range(n):
    zarrcrop.set_num_threads(2)
    with pytest.raises(ValueError, match="between 1 and 1024"):
        zarrcrop.set_num_threads(n)
    assert zarrcrop.get_num_threads() == 2


@pytest.mark.parametrize("n", [2.5, "2", None])
def test_set_num_threads_rejects_non_integers(n):
    zarrcrop.set_num_threads(2)
    with pytest.raises(TypeError):
        zarrcrop.set_num_threads(n)
    assert zarrcrop.get_num_threads() == 2


def test_core_set_num_threads_checks_its_range():
    with pytest.raises(ValueError):
        zarrcrop._core.set_num_threads(1025)


@pytest.mark.native
def test_results_equal_at_1_and_4_threads(tmp_path):
    spec = ArraySpec(
        3, (37, 45, 6), (8, 7, 4), "float32", Blosc("lz4", 5, "bitshuffle"), float("nan"),
        {"name": "default", "separator": "/"},
    )  # fmt: skip
    data = make_data(spec.shape, spec.dtype, seed=11, mode="runs")
    za = create_array(tmp_path / "t.zarr", spec, data, missing=[(0, 0, 0), (2, 3, 1), (4, 6, 1)])
    ca = zarrcrop.open(tmp_path / "t.zarr")
    selections = [
        ...,
        (slice(3, 35), slice(2, 44, 2)),
        (5, slice(None), 1),
        (slice(None, None, 7),),
    ]
    results = {}
    for n in (1, 4):
        zarrcrop.set_num_threads(n)
        results[n] = [ca[sel] for sel in selections]
    for sel, one, four in zip(selections, results[1], results[4], strict=True):
        assert_same(one, za[sel])
        assert_same(four, za[sel])


# --------------------------------------------------------------------------------------
# Python threads
# --------------------------------------------------------------------------------------


@pytest.mark.native
@pytest.mark.parametrize("num_threads", [1, 4])
def test_threads_share_one_array(shared, num_threads):
    path, expected = shared
    zarrcrop.set_num_threads(num_threads)
    ca = zarrcrop.open(path)
    assert ca.native
    run_threads(
        [crop_reader(ca, expected, seed, use_out=seed % 2 == 1) for seed in range(N_THREADS)]
    )
    assert_same(ca[...], expected)


@pytest.mark.native
def test_threads_each_open_their_own_array(shared):
    path, expected = shared

    def open_and_read(seed):
        def run():
            crop_reader(zarrcrop.open(path), expected, seed, use_out=False)()

        return run

    run_threads([open_and_read(seed) for seed in range(N_THREADS)])


@pytest.mark.native
def test_threads_while_thread_count_changes(shared):
    path, expected = shared
    ca = zarrcrop.open(path)
    stop = threading.Event()

    def toggle():
        n = 0
        while not stop.is_set():
            zarrcrop.set_num_threads(1 + n % 3)
            n += 1

    toggler = threading.Thread(target=toggle, daemon=True)
    toggler.start()
    try:
        run_threads([crop_reader(ca, expected, seed, use_out=False) for seed in range(4)])
    finally:
        stop.set()
        toggler.join(JOIN_TIMEOUT_S)
    assert not toggler.is_alive()


# --------------------------------------------------------------------------------------
# fork and spawn
# --------------------------------------------------------------------------------------


def _child_reads(path, expected, expected_threads) -> None:
    """Runs in the forked child; any exception gives a non-zero exit code."""
    assert zarrcrop.get_num_threads() == expected_threads
    ca = zarrcrop.open(path)
    assert ca.native
    # array opened before the fork
    crop_reader(_inherited[0], expected, seed=100, use_out=False)()
    crop_reader(ca, expected, seed=101, use_out=True)()
    assert_same(ca[...], expected)
    zarrcrop.set_num_threads(3)
    crop_reader(ca, expected, seed=102, use_out=False)()


_inherited: list = []


def _fork_and_check(path, expected, expected_threads):
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_reads, args=(path, expected, expected_threads))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("forked child did not finish within 60 s (deadlock after fork?)")
    assert child.exitcode == 0, f"forked child failed with exit code {child.exitcode}"


@pytest.mark.native
def test_fork_after_parent_read(shared):
    path, expected = shared
    zarrcrop.set_num_threads(2)
    ca = zarrcrop.open(path)
    assert_same(ca[...], expected)  # starts the worker pool in the parent
    assert_same(ca[1, 5:50, 3:70], expected[1, 5:50, 3:70])
    _inherited[:] = [ca]
    try:
        _fork_and_check(path, expected, expected_threads=2)
        _fork_and_check(path, expected, expected_threads=2)  # twice: pool state is restorable
    finally:
        _inherited.clear()
    # the parent still works after the children exit
    crop_reader(ca, expected, seed=7, use_out=True)()
    assert zarrcrop.get_num_threads() == 2


@pytest.mark.native
def test_fork_during_concurrent_reads(shared):
    """Fork while other Python threads are inside reads: the child must not inherit a held
    lock."""
    path, expected = shared
    zarrcrop.set_num_threads(2)
    ca = zarrcrop.open(path)
    ca[...]
    stop = threading.Event()

    def keep_reading():
        rng = np.random.default_rng(5)
        while not stop.is_set():
            sel = random_crop(rng, expected.shape)
            assert_same(ca[sel], expected[sel])

    readers = [threading.Thread(target=keep_reading, daemon=True) for _ in range(2)]
    for r in readers:
        r.start()
    _inherited[:] = [ca]
    try:
        for _ in range(3):
            _fork_and_check(path, expected, expected_threads=2)
    finally:
        _inherited.clear()
        stop.set()
        for r in readers:
            r.join(JOIN_TIMEOUT_S)
    assert not any(r.is_alive() for r in readers)


@pytest.mark.native
def test_crop_array_pickles_and_reads_in_a_spawned_process(tmp_path):
    """CropArray survives pickling (spawned DataLoader workers) and reads natively there."""
    import multiprocessing
    import pickle

    import numcodecs
    import zarr

    path = tmp_path / "p.zarr"
    data = np.arange(6 * 40, dtype="int16").reshape(6, 40)
    za = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=(4, 16),
        dtype="int16",
        zarr_format=2,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=1),
    )
    za[...] = data
    ca = zarrcrop.open(path, cache_bytes=1 << 16)
    clone = pickle.loads(pickle.dumps(ca))
    assert clone.native and clone.cache_info()["capacity"] == 1 << 16
    np.testing.assert_array_equal(clone[1:5, 3:30], data[1:5, 3:30])
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        got = pool.apply(_read_slice, (ca, (slice(2, 6), slice(10, 39))))
    np.testing.assert_array_equal(got, data[2:6, 10:39])


def _read_slice(array, selection):
    return array[selection]


# --------------------------------------------------------------------------------------
# Another process rewrites the chunks while they are read
#
# The writer process overwrites each chunk in turn with one of two uniform values (pattern A
# or pattern B of that chunk). Every read of a chunk's region must give all-A or all-B for that
# chunk, or raise zarrcrop.ChunkError / OSError (a torn file), never a crash, a hang or
# mixed / other values.
# --------------------------------------------------------------------------------------

SHAPE = (64, 80)
CHUNKS = (16, 16)
GRID = (SHAPE[0] // CHUNKS[0], SHAPE[1] // CHUNKS[1])
WRITE_SECONDS = 3.0
N_READERS = 4


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


@pytest.mark.native
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
