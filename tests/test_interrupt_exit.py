"""Native reads and the interpreter: Ctrl-C during a read, exit with threads inside reads.

Each case runs in its own Python process (a regression aborts or hangs that process, not the
suite), with a timeout; every process is stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from helpers import run_python

# A 1-d array of 20 million 1-element chunks, none written: a read of all of it takes tens of
# seconds (one open() per chunk), long enough to interrupt.
LONG_ARRAY = """
import os, zarr
def long_array(root):
    path = os.path.join(root, "long.zarr")
    zarr.open_array(path, mode="w", shape=(20_000_000,), chunks=(1,), dtype="uint8",
                    zarr_format=2, fill_value=3)
    return path
"""


def run_script(code: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    # A suite started in the background of a shell inherits SIGINT ignored, and Python then
    # installs no handler: the child starts with the default, as from a terminal.
    return run_python(LONG_ARRAY + textwrap.dedent(code), tmp_path, timeout, default_sigint=True)


INTERRUPT = """
import json, os, signal, sys, threading, time
import numpy as np, zarrcrop
a = zarrcrop.open(long_array(sys.argv[1]))
sent = []
def interrupt_soon():
    time.sleep(0.5)
    sent.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
result = {}
for name, read in [
    ("read", lambda: a[:]),
    ("read_crops", lambda: a.read_crops(np.arange(0, 19_000_000, 1_000_000)[:, None],
                                        (1_000_000,))),
]:
    sent.clear()
    threading.Thread(target=interrupt_soon, daemon=True).start()
    t0 = time.perf_counter()
    try:
        read()
        result[name] = "finished"
    except KeyboardInterrupt:
        result[name] = time.perf_counter() - sent[0]
# The pool is usable afterwards, with the right values.
result["after"] = a[10:14].tolist() + a.read_crops([[5], [7]], (2,)).ravel().tolist()
print(json.dumps(result))
"""


def test_ctrl_c_interrupts_a_long_read_within_100_ms(tmp_path):
    proc = run_script(INTERRUPT, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("read", "read_crops"):
        assert result[name] != "finished", f"{name}: SIGINT did not interrupt it"
        assert result[name] < 0.1, f"{name}: KeyboardInterrupt {result[name]:.3f} s after SIGINT"
    assert result["after"] == [3] * 8


HANDLER = """
import json, os, signal, sys, threading, time
import numpy as np, zarr, zarrcrop
root = sys.argv[1]
path = os.path.join(root, "small.zarr")
data = np.arange(400 * 1000, dtype=np.uint16).reshape(400, 1000)
z = zarr.open_array(path, mode="w", shape=data.shape, chunks=(10, 10), dtype="uint16",
                    zarr_format=2)
z[:] = data
a = zarrcrop.open(path)
calls = []
signal.signal(signal.SIGINT, lambda sig, frame: calls.append(sig))  # does not raise
stop = threading.Event()
def interrupt_often():
    while not stop.is_set():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.002)
threading.Thread(target=interrupt_often, daemon=True).start()
same = all(np.array_equal(a[:], data) for _ in range(5))
stop.set()
print(json.dumps({"same": same, "handled": len(calls)}))
"""


def test_a_sigint_handler_that_does_not_raise_gets_the_complete_read(tmp_path):
    # The read is cancelled on each SIGINT, the user's handler runs, the read starts again.
    proc = run_script(HANDLER, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same"] is True
    assert result["handled"] > 0


IGNORED = """
import os, signal, sys, threading, time
import zarr, zarrcrop
path = os.path.join(sys.argv[1], "mid.zarr")
zarr.open_array(path, mode="w", shape=(300_000,), chunks=(1,), dtype="uint8", zarr_format=2,
                fill_value=5)
a = zarrcrop.open(path)
signal.signal(signal.SIGINT, signal.SIG_IGN)
threading.Thread(target=lambda: (time.sleep(0.2), os.kill(os.getpid(), signal.SIGINT)),
                 daemon=True).start()
print(int(a[:].sum()))
"""


def test_ignored_sigint_does_not_cancel(tmp_path):
    proc = run_script(IGNORED, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(5 * 300_000)


DAEMON_EXIT = """
import sys, threading, time, os
import numpy as np, zarr, zarrcrop
root = sys.argv[1]
kind = {kind!r}
path = os.path.join(root, "a.zarr")
z = zarr.open_array(path, mode="w", shape=(64, 64), chunks=(8, 8), dtype="uint8", zarr_format=2)
z[:] = 7
a = zarrcrop.open(path)
assert a.native
def loop():
    if kind == "read":
        while True:
            a[:]
    elif kind == "read_crops":
        while True:
            a.read_crops([[0, 0], [8, 8]], (16, 16))
    else:  # a read that is still running when the interpreter exits
        a2 = zarrcrop.open(long_array(root))
        a2[:]
for _ in range(2):
    threading.Thread(target=loop, daemon=True).start()
time.sleep(0.3)
print("main returns")
"""


@pytest.mark.parametrize("kind", ["read", "read_crops", "long"])
def test_exit_with_daemon_threads_inside_native_reads(tmp_path, kind):
    # Python 3.11 ends such threads with pthread_exit when they take the GIL back during
    # finalization; inside pybind11's noexcept release guard that was std::terminate (SIGABRT).
    for _ in range(4):
        proc = run_script(DAEMON_EXIT.format(kind=kind), tmp_path, timeout=60)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
        assert "main returns" in proc.stdout
        assert "terminate" not in proc.stderr


LOADER_EXIT = """
import sys, time, os
import numpy as np, zarr, zarrcrop
from zarrcrop.torch import CropDataset, CropLoader
path = os.path.join(sys.argv[1], "v.zarr")
z = zarr.open_array(path, mode="w", shape=(4, 3, 512, 512), chunks=(1, 3, 128, 128),
                    dtype="uint8", zarr_format=2)
z[:] = np.random.default_rng(0).integers(0, 255, size=z.shape, dtype=np.uint8)
loader = CropLoader(CropDataset(zarrcrop.open(path), crop=256, length=100_000), batch_size=16,
                    prefetch=2)
it = iter(loader)
deadline = time.perf_counter() + 0.3
while time.perf_counter() < deadline:
    next(it)  # consumed as fast as made: the prefetch thread is always inside a read
print("main returns")
"""


def test_exit_while_croploader_prefetches(tmp_path):
    pytest.importorskip("torch")
    for _ in range(4):
        proc = run_script(LOADER_EXIT, tmp_path, timeout=120)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
        assert "main returns" in proc.stdout
