"""Cold reads whose device fails: EIO, short reads, slow reads cancelled by Ctrl-C, files
truncated or replaced during a read, a file server that dies.

The files are served by a real FUSE file system (tests/faultfs.py, run as its own process) that
passes reads through to a directory and fails them as each test asks: the kernel's page cache,
mappings and preads are the real ones, only the device behind them misbehaves. Each error must
name the chunk; nothing is returned half-read. Skipped where FUSE cannot be mounted (no
/dev/fuse, no libfuse, not permitted).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarrcrop
from helpers import ArraySpec, Blosc, create_array
from zarrcrop import _core

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/dev/fuse"),
    reason="needs Linux and /dev/fuse",
)

FAULTFS = Path(__file__).with_name("faultfs.py")


class FaultFS:
    """tests/faultfs.py serving `source` at `mountpoint`, run and stopped by PID."""

    def __init__(self, source: Path, mountpoint: Path) -> None:
        self.source, self.mountpoint = source, mountpoint
        self.rules_path = source.parent / "rules.json"
        self.set({})
        mountpoint.mkdir(exist_ok=True)
        self.log_path = source.parent / "faultfs.log"
        self.log = open(self.log_path, "w+b")
        self.proc = subprocess.Popen(
            [sys.executable, str(FAULTFS), str(source), str(mountpoint), str(self.rules_path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while not os.path.ismount(mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()  # closes the log: read it back from its file
                log = self.log_path.read_bytes().decode(errors="replace")
                pytest.skip(f"cannot mount FUSE here: {log[-500:]}")
            time.sleep(0.02)

    def set(self, rules: dict[str, dict[str, float]]) -> None:
        tmp = self.rules_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rules))
        os.replace(tmp, self.rules_path)  # the server reads whole files only

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=False,
                           capture_output=True)  # fmt: skip
        self.log.close()


def evict(root: Path) -> None:
    zarrcrop.clear_maps()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.fixture
def served(tmp_path):
    """(source dir, mounted dir, FaultFS, data) with a zstd array of 200 KB chunks (v2,
    a.zarr) and a sharded one (v3, s.zarr)."""
    source = tmp_path / "src"
    source.mkdir()
    data = np.random.default_rng(7).integers(0, 50, size=(2, 1024, 1024), dtype=np.uint16)
    create_array(source / "a.zarr", ArraySpec(2, data.shape, (1, 512, 512), "uint16",
                                              Blosc("zstd", 3, "bitshuffle")), data)  # fmt: skip
    create_array(source / "s.zarr", ArraySpec(3, data.shape, (1, 256, 256), "uint16",
                                              Blosc("zstd", 3, "bitshuffle"),
                                              layout="v3-sharding"), data)  # fmt: skip
    fs = FaultFS(source, tmp_path / "mnt")
    try:
        yield source, fs.mountpoint, fs, data
    finally:
        fs.stop()


def test_eio_in_a_cold_read_names_the_chunk(served):
    _, mnt, fs, data = served
    a = zarrcrop.open(mnt / "a.zarr")
    sel = (0, slice(100, 400), slice(100, 400))
    for rule in ({"eio_from": 100_000}, {"eio_from": 0}):  # in the blocks; in the header
        fs.set({"a.zarr/0.0.0": rule})
        evict(mnt)
        with pytest.raises(OSError, match=r"chunk '0\.0\.0'.*0\.0\.0") as info:
            a[sel]
        assert info.value.errno == errno.EIO
        evict(mnt)
        with pytest.raises(OSError, match=r"0\.0\.0"):
            a.read_crops([[1, 0, 0], [0, 100, 100]], (1, 300, 300))
    # The device recovers: the same reads succeed, nothing stale is kept.
    fs.set({})
    evict(mnt)
    np.testing.assert_array_equal(a[sel], data[sel])
    np.testing.assert_array_equal(a.read_crops([[0, 100, 100]], (1, 300, 300))[0, 0], data[sel])


def test_eio_in_a_shard_names_the_shard_and_inner_chunk(served):
    _, mnt, fs, data = served
    a = zarrcrop.open(mnt / "s.zarr")
    shard = next(p for p in (mnt / "s.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")
    rel = shard.relative_to(mnt).as_posix()
    fs.set({rel: {"eio_from": 1000}})
    evict(mnt)
    with pytest.raises(OSError, match=re.escape(shard.name) + r".*inner chunk") as info:
        a[:]
    assert info.value.errno == errno.EIO
    fs.set({})
    evict(mnt)
    np.testing.assert_array_equal(a[:], data)


def test_a_short_read_is_an_error_naming_the_chunk(served):
    # The file reads as if it ended early while its size says otherwise (a truncation the
    # kernel has not seen yet): never a short copy.
    _, mnt, fs, data = served
    a = zarrcrop.open(mnt / "a.zarr")
    size = (mnt / "a.zarr" / "1.1.1").stat().st_size
    fs.set({"a.zarr/1.1.1": {"short_from": size // 2}})
    evict(mnt)
    with pytest.raises(zarrcrop.ChunkError, match=r"1\.1\.1"):
        a[1, 600:1000, 600:1000]
    evict(mnt)
    with pytest.raises(zarrcrop.ChunkError, match=r"1\.1\.1"):
        a.read_crops([[1, 600, 600]], (1, 400, 400))
    fs.set({})
    # The kernel took the short read for the file's end; it learns the real size again when
    # its cached attributes expire (1 s by default).
    deadline = time.monotonic() + 10
    while (mnt / "a.zarr" / "1.1.1").stat().st_size != size and time.monotonic() < deadline:
        time.sleep(0.1)
    evict(mnt)
    np.testing.assert_array_equal(a[1, 600:1000, 600:1000], data[1, 600:1000, 600:1000])


def _read_in_thread(fn):
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:  # reported to the test
            result["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, result


def test_a_chunk_truncated_during_a_read_is_an_error_or_read_whole(served):
    source, mnt, fs, data = served
    a = zarrcrop.open(mnt / "a.zarr")
    fs.set({"a.zarr/0.1.1": {"delay": 0.3}})
    evict(mnt)
    th, result = _read_in_thread(lambda: a[0, 512:1024, 512:1024])
    time.sleep(0.1)  # the header's read is under way
    victim = source / "a.zarr" / "0.1.1"
    os.truncate(victim, victim.stat().st_size // 3)
    th.join(60)
    assert not th.is_alive()
    if "error" in result:
        assert isinstance(result["error"], zarrcrop.ChunkError), result["error"]
        assert "0.1.1" in str(result["error"])
    else:  # the file was read before the truncation reached it
        np.testing.assert_array_equal(result["value"], data[0, 512:1024, 512:1024])


def test_a_chunk_replaced_during_a_read_reads_one_version(served):
    # A writer replaces the chunk file (a new file renamed over it) while a slow read of it is
    # under way: the read sees the old file or the new one, never a mix of both.
    source, mnt, fs, data = served
    new = data.copy()
    new[0, 512:, 512:] += 1
    replacement = source.parent / "new.zarr"
    create_array(replacement, ArraySpec(2, data.shape, (1, 512, 512), "uint16",
                                        Blosc("zstd", 3, "bitshuffle")), new)  # fmt: skip
    a = zarrcrop.open(mnt / "a.zarr")
    fs.set({"a.zarr/0.1.1": {"delay": 0.2}})
    evict(mnt)
    th, result = _read_in_thread(lambda: a[0, 512:1024, 512:1024])
    time.sleep(0.1)
    os.replace(replacement / "0.1.1", source / "a.zarr" / "0.1.1")
    th.join(60)
    assert not th.is_alive()
    if "error" in result:  # a size that changed under the read: named, never a mix
        assert isinstance(result["error"], (zarrcrop.ChunkError, OSError))
        assert "0.1.1" in str(result["error"])
        return
    got = result["value"]
    assert np.array_equal(got, data[0, 512:, 512:]) or np.array_equal(got, new[0, 512:, 512:])


def test_the_file_server_dying_mid_read_is_an_error_naming_the_chunk(served):
    _, mnt, fs, _ = served
    a = zarrcrop.open(mnt / "a.zarr")
    fs.set({"a.zarr/1.0.1": {"delay": 0.5}})
    evict(mnt)
    th, result = _read_in_thread(lambda: a[1, :512, 512:])
    time.sleep(0.2)
    os.kill(fs.proc.pid, signal.SIGKILL)
    fs.proc.wait(10)
    th.join(60)
    assert not th.is_alive()
    assert isinstance(result.get("error"), OSError), result
    assert "1.0.1" in str(result["error"])


CTRL_C = """
import json, os, signal, sys, threading, time
import numpy as np, zarrcrop
a = zarrcrop.open(sys.argv[1])
zarrcrop.clear_maps()
for name in os.listdir(sys.argv[1]):
    fd = os.open(os.path.join(sys.argv[1], name), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
sent = []
def interrupt_soon():
    time.sleep(0.4)
    sent.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt_soon, daemon=True).start()
starts = np.array([[t % 2, 0, 0] for t in range(64)])
result = {}
try:
    a.read_crops(starts, (1, 1024, 1024))  # every read of every chunk 0.1 s late
    result["read"] = "finished"
except KeyboardInterrupt:
    result["read"] = time.perf_counter() - sent[0]
print(json.dumps(result))
"""


def test_ctrl_c_cancels_a_slow_cold_read(served, tmp_path):
    _, mnt, fs, data = served
    fs.set({f"a.zarr/{t}.{y}.{x}": {"delay": 0.1} for t in (0, 1) for y in (0, 1) for x in (0, 1)})
    script = tmp_path / "ctrl_c.py"
    script.write_text(textwrap.dedent(CTRL_C))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(mnt / "a.zarr")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out: {err[-2000:]}")
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["read"] != "finished"
    # Cancelled at once; reads already at the device (0.1 s each) are waited for, no more.
    assert result["read"] < 0.6, result
    fs.set({})
    evict(mnt)
    a = zarrcrop.open(mnt / "a.zarr")
    np.testing.assert_array_equal(a[1], data[1])


def test_cold_reads_stay_within_the_read_budget(served):
    # A batch of many cold chunks: reads in flight at most the I/O threads, bytes held at most
    # the budget (the device is slow, so reads would pile up if nothing held them back).
    _, mnt, fs, data = served
    a = zarrcrop.open(mnt / "a.zarr")
    fs.set({})
    evict(mnt)
    _core._testing.reset_read_queue_counts()
    starts = np.array([[t, y, x] for t in (0, 1) for y in (0, 300, 700) for x in (0, 300, 700)])
    got = a.read_crops(starts, (1, 300, 300))
    for i, (t, y, x) in enumerate(starts):
        np.testing.assert_array_equal(got[i, 0], data[t, y : y + 300, x : x + 300])
    counts = _core._testing.read_queue_counts()
    assert counts["reads"] > 0
    assert 0 < counts["max_in_flight"] <= zarrcrop.get_io_threads()
    assert counts["max_buffered"] <= _core._testing.read_budget()
