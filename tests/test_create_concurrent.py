"""Two create_dataset processes on one path (a second launch of the same job): real processes.

The dataset's lock file serialises them: the second refuses (naming the first's pid) or, with
``wait=``, resumes after the first; a SIGKILLed writer leaves no lock behind. Never a frame of
fill values in a dataset marked complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import zarr
import zarrcrop

N_FRAMES = 10
SHAPE = (N_FRAMES, 3, 48, 64)

# argv: path, seconds per frame, start time (time.time(); 0: now), wait seconds, source kind,
# and optionally a file whose creation lets the writer yield its last frame (it holds the lock
# until then, however slowly the machine runs the other process).
_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import zarrcrop

    path, kind = sys.argv[1], sys.argv[5]
    slow, start_at, wait = map(float, sys.argv[2:5])
    hold = sys.argv[6] if len(sys.argv) > 6 else ""
    data = np.random.default_rng(5).integers(1, 256, SHAPE, dtype=np.uint8)  # no zero value

    def gen():
        for t in range(len(data)):
            time.sleep(slow)
            if hold and t == len(data) - 1:
                deadline = time.monotonic() + 120
                while not os.path.exists(hold) and time.monotonic() < deadline:
                    time.sleep(0.01)
            yield data[t]

    class Frames:  # a known length: a finished dataset is recognised and skipped
        def __len__(self):
            return len(data)

        def __iter__(self):
            return gen()

    # "gen": unknown length, the array grows frame by frame (racing resizes without a lock)
    source = gen() if kind == "gen" else Frames()
    while time.time() < start_at:  # both processes start writing at the same moment
        time.sleep(0.001)
    more = {"wait": wait} if wait else {}
    report = zarrcrop.create_dataset(path, {"gt": source}, workers=2, progress=False, **more)
    print(report.arrays["gt"].frames_written, report.arrays["gt"].frames_skipped)
    """
).replace("SHAPE", repr(SHAPE))


def expected() -> np.ndarray:
    return np.random.default_rng(5).integers(1, 256, SHAPE, dtype=np.uint8)


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    return script


def _start(
    script: Path,
    path: Path,
    slow: float,
    start_at: float = 0.0,
    wait: float = 0.0,
    kind: str = "known",
    hold: Path | None = None,
) -> subprocess.Popen[str]:
    args = [str(path), str(slow), str(start_at), str(wait), kind]
    return subprocess.Popen(
        [sys.executable, str(script), *args, *([str(hold)] if hold else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out, err


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def _wait_for_markers(path: Path, proc: subprocess.Popen[str], count: int) -> None:
    """Until ``proc`` has finished ``count`` frames (so it is mid-run and holds the lock)."""
    done = path / "gt" / ".zarrcrop-done"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if done.is_dir() and len(os.listdir(done)) >= count:
            return
        assert proc.poll() is None, "the writer ended early: " + proc.communicate()[1][-2000:]
        time.sleep(0.01)
    raise AssertionError(f"no {count} finished frames in {path} after 60 s")


def _assert_complete_and_correct(path: Path) -> None:
    g = zarrcrop.open_group(path)
    assert g.attrs["zarrcrop"]["complete"] is True
    data = g["gt"][:]
    zero = [t for t in range(len(data)) if not data[t].any()]
    assert not zero, f"frames {zero} are all zeros in a dataset marked complete"
    np.testing.assert_array_equal(data, expected())
    assert not (path / ".zarrcrop-lock").exists()  # removed by the writer that held it


def test_second_writer_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    script = _script(tmp_path)
    path = tmp_path / "d"
    release = tmp_path / "release"
    first = _start(script, path, slow=0.15, hold=release)
    try:
        _wait_for_markers(path, first, 2)
        rc, out, err = _finish(_start(script, path, slow=0.0))
        release.touch()
        assert rc != 0, f"the second writer ran alongside the first: {out}"
        assert "DatasetLockedError" in err and f"pid {first.pid}" in err, err[-2000:]
        assert str(path) in err
        rc, out, err = _finish(first)
    finally:
        _stop(first)
    assert rc == 0, err[-2000:]
    assert out.split() == [str(N_FRAMES), "0"]
    _assert_complete_and_correct(path)
    # a later run of the same job resumes the finished dataset: nothing rewritten
    rc, out, err = _finish(_start(script, path, slow=0.0))
    assert rc == 0 and out.split() == ["0", str(N_FRAMES)], err[-2000:]


def test_simultaneous_launches_are_serialised(tmp_path: Path) -> None:
    """Pairs started at the same instant: one writes; the other refuses, or (it came second)
    finds a finished dataset (known length) or rewrites it alone (a generator's)."""
    script = _script(tmp_path)
    for i in range(8):
        kind = "known" if i % 2 else "gen"
        path = tmp_path / f"d{i}"
        start_at = time.time() + 2.0  # both have imported zarrcrop by then
        procs = [_start(script, path, 0.03, start_at, kind=kind) for _ in range(2)]
        try:
            results = [_finish(p) for p in procs]
        finally:
            for p in procs:
                _stop(p)
        writers = 0
        for rc, out, err in results:
            if rc == 0:
                written, skipped = map(int, out.split())
                assert written + skipped == N_FRAMES
                writers += written > 0
            else:
                assert "DatasetLockedError" in err, f"round {i} ({kind}): {err[-2000:]}"
        assert writers >= 1, f"round {i} ({kind}): nobody wrote: {results}"
        if kind == "known":
            assert writers == 1, f"round {i}: {writers} processes wrote frames: {results}"
        _assert_complete_and_correct(path)


def test_sigkilled_writer_leaves_no_lock(tmp_path: Path) -> None:
    script = _script(tmp_path)
    path = tmp_path / "d"
    first = _start(script, path, slow=0.15)
    try:
        _wait_for_markers(path, first, 2)
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
    finally:
        _stop(first)
    assert first.returncode == -signal.SIGKILL
    assert (path / ".zarrcrop-lock").exists()  # the file stays; the kernel dropped its flock
    assert zarr.open_group(str(path), mode="r").attrs["zarrcrop"]["complete"] is False
    rc, out, err = _finish(_start(script, path, slow=0.0))
    assert rc == 0, err[-2000:]
    written, skipped = map(int, out.split())
    assert skipped >= 2 and written + skipped == N_FRAMES
    _assert_complete_and_correct(path)


def test_wait_resumes_after_the_first_writer(tmp_path: Path) -> None:
    script = _script(tmp_path)
    path = tmp_path / "d"
    first = _start(script, path, slow=0.1)
    try:
        _wait_for_markers(path, first, 1)
        second = _start(script, path, 0.0, wait=60.0)
        try:
            rc2, out2, err2 = _finish(second)
        finally:
            _stop(second)
        rc1, out1, err1 = _finish(first)
    finally:
        _stop(first)
    assert rc1 == 0, err1[-2000:]
    assert out1.split() == [str(N_FRAMES), "0"]
    assert rc2 == 0, err2[-2000:]
    assert out2.split() == ["0", str(N_FRAMES)]  # it waited, then found the dataset finished
    _assert_complete_and_correct(path)
