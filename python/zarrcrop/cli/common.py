"""Helpers shared by the ``zarrcrop`` commands: argument types, messages, sizes on disk."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from .. import MAX_THREADS

#: Crops read untimed before a measurement (first reads open files, start pools, fill caches).
WARMUP_CROPS = 2
#: Most crops a bench or demo run reads (each crop's selection is held in memory).
MAX_CROPS = 100_000


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with one-line errors (``zarrcrop: error: ...``, exit 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line with a pointer to ``--help`` and exit with status 2."""
        self.exit(2, f"zarrcrop: error: {message} (see '{self.prog} --help')\n")


def _integer(text: str, minimum: int, what: str) -> int:
    """argparse type body: an integer >= ``minimum``, else an error saying ``what``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer(text, 0, "a non-negative integer")


def add_crops(p: argparse.ArgumentParser) -> None:
    """The ``--crops`` option (how many crops to read) of the commands that time reads."""
    p.add_argument(
        "--crops",
        type=crop_count,
        default=50,
        metavar="N",
        help=f"crops to read (default 50, at most {MAX_CROPS})",
    )


def add_seed(p: argparse.ArgumentParser) -> None:
    """The ``--seed`` option of the commands that draw random crops."""
    p.add_argument(
        "--seed", type=non_negative_int, default=0, metavar="S", help="random seed (default 0)"
    )


def crop_count(text: str) -> int:
    """argparse type: a number of crops, 1 to :data:`MAX_CROPS`."""
    value = positive_int(text)
    if value > MAX_CROPS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_CROPS} crops, got {text!r}")
    return value


def thread_count(text: str) -> int:
    """argparse type: a number of threads, 1 to zarrcrop's ``MAX_THREADS``."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_THREADS} threads (zarrcrop's limit), got {text!r}"
        )
    return value


def seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def error(message: str, code: int = 1) -> int:
    """Print ``zarrcrop: error: message`` on stderr and return ``code`` (the exit status)."""
    print(f"zarrcrop: error: {message}", file=sys.stderr)
    return code


def warn(message: str) -> None:
    """Print ``zarrcrop: warning: message`` on stderr."""
    print(f"zarrcrop: warning: {message}", file=sys.stderr)


def format_bytes(n: float) -> str:
    """``n`` bytes in B, KiB, MiB or GiB, e.g. ``'1.5 MiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def dir_stats(path: Path) -> tuple[int, int]:
    """Total size in bytes and count of the regular files under ``path``."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:  # removed while we walk: it no longer takes space
                pass
    return total, files


def disk_usage(path: Path) -> int:
    """Total size in bytes of the regular files under ``path``."""
    return dir_stats(path)[0]
