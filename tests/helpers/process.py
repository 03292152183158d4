"""The test process and child processes: resident memory (RSS), Python scripts run in a
process of their own, and forked children waited for, each with a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: For tests that measure RSS growth: Linux only, and not under ASan, whose quarantine holds
#: freed memory so RSS grows by design.
rss_check = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm") or "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="needs /proc (Linux) and no ASan (its quarantine holds freed memory)",
)


def rss_bytes() -> int:
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_python(
    code: str, tmp_path: Path, timeout: float, *, default_sigint: bool = False
) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` as ``tmp_path/case.py`` in a fresh interpreter, with ``sys.argv[1]`` =
    ``tmp_path``; returns its exit code and output. Past ``timeout`` seconds it is killed (by
    its PID) and the test fails. ``default_sigint``: the child starts with SIGINT's default
    action (a suite started in the background of a shell inherits SIGINT ignored, and Python
    then installs no handler), as from a terminal."""
    script = tmp_path / "case.py"
    script.write_text(code)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint if default_sigint else None,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s\nstdout: {out}\nstderr: {err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_child(pid: int, timeout: float) -> int:
    """The exit code of the forked child ``pid``; past ``timeout`` seconds it is killed (by its
    PID) and the test fails."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child {pid} did not finish in {timeout} s")
        time.sleep(0.02)
