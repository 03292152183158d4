"""Command line interface: ``zarrcrop COMMAND ...`` (also ``python -m zarrcrop``).

Each command lives in a module of this package with a ``register(subparsers)`` function listed
in ``COMMANDS``; it adds its parser and sets ``func`` (called with the parsed namespace, returns
the exit code). To add a command, write such a module and append its ``register`` to
``COMMANDS``. Shared argument types and messages are in :mod:`zarrcrop.cli.common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from . import bench, create, demo, info
from .common import OneLineErrorParser

#: The commands, in the order ``zarrcrop --help`` lists them.
COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    demo.register,
    create.register,
    info.register,
    bench.register,
]

__all__ = ["COMMANDS", "build_parser", "main"]


def _package_version() -> str:
    try:
        return version("zarrcrop")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``zarrcrop`` argument parser with every command of ``COMMANDS``."""
    # Typed as the base class: commands take subparsers of any ArgumentParser (the subcommands
    # still get OneLineErrorParser, argparse builds them with the parent's class).
    parser: argparse.ArgumentParser = OneLineErrorParser(
        prog="zarrcrop",
        description="Fast native crop reads of Zarr arrays, drop-in for zarr-python.",
    )
    parser.add_argument("--version", action="version", version=f"zarrcrop {_package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zarrcrop`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("zarrcrop: interrupted", file=sys.stderr)
        return 130
