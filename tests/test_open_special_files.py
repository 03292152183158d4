"""Chunk and shard files that are not plain readable files: FIFOs, sockets, symlink loops,
dangling symlinks and files the process may not read.

A FIFO in place of a chunk used to block ``open()`` forever (waiting for a writer): those reads
run in a subprocess with a timeout so that a regression fails instead of hanging the suite.
zarr-python itself (and so zarrcrop's fallback path) still blocks on a FIFO: its LocalStore
opens chunk files without O_NONBLOCK, so only native reads are checked for FIFOs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarrcrop

DATA = np.arange(64, dtype=np.int16).reshape(8, 8)
FILL = 7


def _build(path: Path, fmt: int) -> tuple[zarr.Array, Path]:
    """An (8, 8) int16 array, chunks (2, 2) (v3: in shards of (4, 4)); returns the array and
    the file holding element (0, 0)."""
    kwargs = {"shards": (4, 4)} if fmt == 3 else {}
    za = zarr.create_array(
        store=str(path), shape=(8, 8), chunks=(2, 2), dtype="int16", zarr_format=fmt,
        fill_value=FILL, **kwargs,
    )  # fmt: skip
    za[...] = DATA
    return za, path / ("0.0" if fmt == 2 else "c/0/0")


def _expected_missing(fmt: int) -> np.ndarray:
    """The data with the file of element (0, 0) missing (a chunk, or a whole shard)."""
    expected = DATA.copy()
    n = 2 if fmt == 2 else 4
    expected[:n, :n] = FILL
    return expected


_FIFO_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import zarrcrop

    ca = zarrcrop.open(sys.argv[1])
    results = []
    for how in ("read", "read_crops", "other_chunks"):
        try:
            if how == "read":
                ca[0:3, 0:3]
            elif how == "read_crops":
                ca.read_crops(np.array([[0, 0], [1, 1]]), (2, 2))
            else:
                results.append(["ok", ca[4:8, 4:8].tolist()])
                continue
            results.append(["no error", None])
        except OSError as exc:
            results.append([type(exc).__name__, str(exc)])
    print(json.dumps(results))
    """
)


@pytest.mark.parametrize("fmt", [2, 3], ids=["chunk", "shard"])
def test_fifo_chunk_file_raises_instead_of_hanging(tmp_path, fmt):
    _, key = _build(tmp_path / "a.zarr", fmt)
    key.unlink()
    os.mkfifo(key)
    assert zarrcrop.open(tmp_path / "a.zarr").native
    proc = subprocess.run(
        [sys.executable, "-c", _FIFO_CHILD, str(tmp_path / "a.zarr")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for kind, message in results[:2]:
        assert kind == "OSError", (kind, message)
        assert "not a regular file" in message and str(key) in message, message
    assert results[2] == ["ok", DATA[4:8, 4:8].tolist()]


@pytest.mark.parametrize("fmt", [2, 3], ids=["chunk", "shard"])
@pytest.mark.parametrize("kind", ["socket", "symlink-loop"])
def test_unopenable_chunk_file_raises_oserror_like_zarr(tmp_path, fmt, kind):
    path = tmp_path / "a.zarr"
    za, key = _build(path, fmt)
    key.unlink()
    if kind == "socket":
        # AF_UNIX paths are limited to ~107 bytes: bind from inside the directory.
        sock = socket.socket(socket.AF_UNIX)
        cwd = os.getcwd()
        os.chdir(key.parent)
        try:
            sock.bind(key.name)
        finally:
            os.chdir(cwd)
    else:
        os.symlink(key.name, key)
    try:
        with pytest.raises(OSError):
            za[0:3, 0:3]  # zarr-python: OSError too (ENXIO / ELOOP)
        ca = zarrcrop.open(path)
        assert ca.native
        for read in (lambda: ca[0:3, 0:3], lambda: ca.read_crops([[0, 0]], (2, 2))):
            with pytest.raises(OSError) as info:
                read()
            assert str(path) in str(info.value) and str(key) in str(info.value)
        np.testing.assert_array_equal(ca[4:8, 4:8], DATA[4:8, 4:8])
    finally:
        if kind == "socket":
            sock.close()


@pytest.mark.parametrize("fmt", [2, 3], ids=["chunk", "shard"])
def test_dangling_symlink_reads_as_missing_like_zarr(tmp_path, fmt):
    path = tmp_path / "a.zarr"
    za, key = _build(path, fmt)
    key.unlink()
    os.symlink("does-not-exist", key)
    expected = _expected_missing(fmt)
    np.testing.assert_array_equal(za[...], expected)  # zarr-python: a missing chunk
    ca = zarrcrop.open(path)
    assert ca.native
    np.testing.assert_array_equal(ca[...], expected)
    np.testing.assert_array_equal(ca.read_crops([[0, 0], [3, 3]], (3, 3))[0], expected[:3, :3])
    fallback = zarrcrop.open(path)
    fallback._reader = None  # the zarr-python path
    np.testing.assert_array_equal(fallback[...], expected)


# ------------------------------------------------------------------------------ EACCES

_EACCES_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import zarrcrop

    ca = zarrcrop.open(sys.argv[1])
    ca[4:8, 4:8]  # warm up imports while still privileged
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    results = []
    for read in (lambda: ca[0:3, 0:3], lambda: ca.read_crops(np.array([[0, 0]]), (2, 2))):
        try:
            read()
            results.append(["no error", "", 0])
        except OSError as exc:
            results.append([type(exc).__name__, str(exc), exc.errno])
    try:
        results.append(["ok", ca[4:8, 4:8].tolist(), 0])
    except PermissionError:  # the temp directory's parents are not world-traversable
        results = [["skip", "", 0]]
    print(json.dumps(results))
    """
)


def _can_drop_privileges() -> bool:
    try:
        drop = "import os; os.setgroups([]); os.setgid(65534); os.setuid(65534)"
        proc = subprocess.run([sys.executable, "-c", drop], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


@pytest.mark.parametrize("fmt", [2, 3], ids=["chunk", "shard"])
def test_unreadable_chunk_file_raises_permission_error(fmt):
    if os.getuid() == 0 and not _can_drop_privileges():
        pytest.skip("running as root without the right to drop privileges")
    # World-traversable directories, so that the unprivileged child reaches the chunk file.
    base = Path(tempfile.mkdtemp(prefix="zarrcrop-eacces-"))
    try:
        base.chmod(0o755)
        path = base / "a.zarr"
        _, key = _build(path, fmt)
        for p in [path, *path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        key.chmod(0)
        proc = subprocess.run(
            [sys.executable, "-c", _EACCES_CHILD, str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout.strip().splitlines()[-1])
        if results[0][0] == "skip":
            pytest.skip(f"{base.parent} is not traversable for an unprivileged user")
        for kind, message, errno in results[:2]:
            assert kind == "PermissionError" and errno == 13, (kind, message)
            assert str(path) in message and str(key) in message, message
        assert results[2][1] == DATA[4:8, 4:8].tolist()
    finally:
        shutil.rmtree(base)
