"""A FUSE file system that serves a directory read-only and injects faults: the kernel's real
FUSE path (page cache, mappings, preads) between zarrcrop and files that fail.

Run as a server process: ``python faultfs.py SOURCE MOUNTPOINT RULES``. RULES is a JSON file,
read again before every operation, mapping a path relative to SOURCE to a rule:

- ``{"eio_from": N}``: reads of bytes at or after offset N fail with EIO;
- ``{"short_from": N}``: the file reads as if it ended at N (a truncation the size does not
  show);
- ``{"delay": S}``: every read of the file takes S seconds longer.

The tests start it, wait for the mount, and stop it by its PID (``FaultFS`` in the tests).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from typing import Any

from mfusepy import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]


class FaultOps(Operations):  # type: ignore[misc]
    use_ns = True  # times in nanoseconds (the float form is deprecated)

    def __init__(self, source: str, rules: str) -> None:
        self.source = source
        self.rules_path = rules

    def _rules(self, path: str) -> dict[str, Any]:
        try:
            with open(self.rules_path) as f:
                rules = json.load(f)
        except (OSError, ValueError):
            return {}
        rule = rules.get(path.lstrip("/"), {})
        return rule if isinstance(rule, dict) else {}

    def _full(self, path: str) -> str:
        return os.path.join(self.source, path.lstrip("/"))

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._full(path))
        except OSError as e:
            raise FuseOSError(e.errno) from e
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid")
        attrs = {k: getattr(st, k) for k in keys}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = getattr(st, k + "_ns")
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise FuseOSError(errno.EROFS)
        return os.open(self._full(path), os.O_RDONLY)

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        rule = self._rules(path)
        if "delay" in rule:
            time.sleep(float(rule["delay"]))
        if "eio_from" in rule and offset + size > int(rule["eio_from"]):
            raise FuseOSError(errno.EIO)
        if "short_from" in rule:
            size = max(0, min(size, int(rule["short_from"]) - offset))
        return os.pread(fh, size, offset)

    def statfs(self, path: str) -> dict[str, Any]:
        st = os.statvfs(self.source)
        return {
            k: getattr(st, k)
            for k in (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_namemax",
            )
        }


def main() -> None:
    source, mountpoint, rules = sys.argv[1:4]
    # Threads: zarrcrop reads many ranges at once. No kernel caching of attributes beyond the
    # default; reads go through the page cache as on any file system.
    FUSE(FaultOps(source, rules), mountpoint, foreground=True, nothreads=False, ro=True)


if __name__ == "__main__":
    main()
