"""Concurrent reads from Python threads, and reads in a child forked after the parent read."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import zarrcrop
from helpers import ArraySpec, Blosc, assert_same, create_array, make_data, random_crop

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


def test_threads_each_open_their_own_array(shared):
    path, expected = shared

    def open_and_read(seed):
        def run():
            crop_reader(zarrcrop.open(path), expected, seed, use_out=False)()

        return run

    run_threads([open_and_read(seed) for seed in range(N_THREADS)])


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
# fork
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
