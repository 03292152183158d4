"""The dataset lock: one conversion at a time writes a dataset.

The writer holds ``PATH/.zarrcrop-lock`` with ``fcntl.flock`` (exclusive) and writes its pid and
host into it. The kernel drops the lock when its holder dies, so a crashed writer never leaves
the dataset locked; a second writer waits (``wait=``) or raises :class:`DatasetLockedError`.
"""

from __future__ import annotations

import os
import socket
import time
import warnings

from ..errors import DatasetLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no locking
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "acquire_lock", "release_lock"]

#: Lock file in the dataset directory, held (flock) by the process writing the dataset.
LOCK_FILE = ".zarrcrop-lock"


def acquire_lock(root: str, wait: float) -> int | None:
    """Lock ``root``'s lock file (flock, exclusive); the descriptor, or None without fcntl.

    Waits up to ``wait`` seconds for another holder, then raises DatasetLockedError. A holder
    that dies releases the lock (the kernel drops flocks with the last descriptor). Call it
    from ``create_dataset`` itself: a warning it gives points at create_dataset's caller.
    """
    if fcntl is None:  # pragma: no cover - not on POSIX
        return None
    path = os.path.join(root, LOCK_FILE)
    deadline = time.monotonic() + max(0.0, float(wait))
    replaced = 0
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatasetLockedError(root, path, _lock_holder(path)) from None
            time.sleep(min(0.1, left))
            continue
        except OSError as exc:  # a file system without flock: write unguarded, as before
            warnings.warn(
                f"{path}: cannot lock ({exc}); a second conversion of {root} at the same time "
                "would not be detected",
                stacklevel=3,
            )
            return fd
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            return fd
        os.close(fd)  # its last holder removed it after we opened it: lock the new file
        replaced += 1
        if replaced > 1000:
            raise DatasetLockedError(root, path, "the lock file keeps being replaced")


def release_lock(root: str, fd: int | None) -> None:
    """Release the lock :func:`acquire_lock` took, removing the lock file if it is still ours."""
    if fd is None:  # pragma: no cover
        return
    path = os.path.join(root, LOCK_FILE)
    try:
        if _same_file(fd, path):  # removed while held, so a waiter sees it is stale
            os.unlink(path)
    except OSError:
        pass
    os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed or replaced)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _lock_holder(path: str) -> str:
    """What the lock file says about its holder ("pid N on HOST")."""
    for _ in range(10):  # the holder writes its pid just after locking
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.02)
    return "pid unknown"
