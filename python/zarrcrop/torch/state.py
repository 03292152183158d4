"""The saved state of a :class:`~zarrcrop.torch.CropLoader` or
:class:`~zarrcrop.torch.CropSampler`: a small JSON-serialisable dict, and its checks (torch-free).

Format (version 1)::

    {
        "version": 1,          # STATE_VERSION of the zarrcrop that saved it
        "epoch": 3,            # the epoch in progress
        "position": 96,        # samples of the epoch's global order consumed by all ranks
        "world_size": 2,       # ranks when saved (informational: any world size resumes)
        "batch_size": 8,       # per rank, when saved (informational)
        "seed": 0,             # seed of the order
        "shuffle": "random",   # "none", "random" or "window"
        "window": 0,           # frames per window ("window" shuffling; else 0)
        "group": 0,            # samples per group ("window" shuffling: the batch size; else 0)
        "dataset": {           # what identifies the dataset
            "length": 300, "arrays": {"hr": [5, 3, 96, 144], ...},
            "dtypes": {"hr": "|u1", ...}, "crop": [24, 24], "frames": 1, "flips": true,
            "seed": 0,
        },
    }

:func:`check_state` raises ``ValueError`` naming the field for a state that is not such a dict,
one of a newer version, or one whose dataset or order differs from the loader's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from .order import SHUFFLES

__all__ = ["STATE_VERSION", "DatasetLike", "check_state", "dataset_identity", "make_state"]

#: The version of the state format written by this zarrcrop (and the newest it reads).
STATE_VERSION = 1

_FIELDS = (
    "version",
    "epoch",
    "position",
    "world_size",
    "batch_size",
    "seed",
    "shuffle",
    "window",
    "group",
    "dataset",
)
_DATASET_FIELDS = ("length", "arrays", "dtypes", "crop", "frames", "flips", "seed")


class DatasetLike(Protocol):
    """What a state records of a :class:`~zarrcrop.torch.CropDataset`."""

    crop: tuple[int, int]
    frames: int
    flips: bool
    seed: int

    def __len__(self) -> int: ...

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]: ...

    @property
    def dtypes(self) -> dict[str, np.dtype[Any]]: ...


def dataset_identity(dataset: DatasetLike) -> dict[str, Any]:
    """The ``"dataset"`` field of a state: what must match for a state to resume."""
    return {
        "length": len(dataset),
        "arrays": {name: [int(n) for n in shape] for name, shape in dataset.shapes.items()},
        "dtypes": {name: np.dtype(dtype).str for name, dtype in dataset.dtypes.items()},
        "crop": [int(n) for n in dataset.crop],
        "frames": int(dataset.frames),
        "flips": bool(dataset.flips),
        "seed": int(dataset.seed),
    }


def make_state(
    *,
    epoch: int,
    position: int,
    world_size: int,
    batch_size: int,
    seed: int,
    shuffle: str,
    window: int,
    group: int,
    dataset: dict[str, Any],
) -> dict[str, Any]:
    """A state dict (see the module's docstring); ``dataset`` is :func:`dataset_identity`."""
    return {
        "version": STATE_VERSION,
        "epoch": int(epoch),
        "position": int(position),
        "world_size": int(world_size),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "shuffle": str(shuffle),
        "window": int(window),
        "group": int(group),
        "dataset": dataset,
    }


def check_state(state: Any, expected: Mapping[str, Any]) -> tuple[int, int]:
    """``(epoch, position)`` of ``state`` after checking it against ``expected``, the state of
    the loader that is to resume (:func:`make_state`); ``ValueError`` naming the field that is
    missing, unknown, of the wrong type or out of range, or that does not match."""
    if not isinstance(state, Mapping):
        raise ValueError(f"a loader state must be a dict (from state_dict()), got {_kind(state)}")
    if "version" not in state:
        raise ValueError("loader state: missing field 'version'")
    version = _int(state, "version", minimum=1)
    if version > STATE_VERSION:
        raise ValueError(
            f"loader state: field 'version' is {version}, a newer format than this zarrcrop "
            f"reads (version {STATE_VERSION}); upgrade zarrcrop to resume from it"
        )
    _same_fields(state, _FIELDS, "")
    epoch = _int(state, "epoch", minimum=0)
    position = _int(state, "position", minimum=0)
    _int(state, "world_size", minimum=1)
    _int(state, "batch_size", minimum=1)
    _int(state, "seed")
    if state["shuffle"] not in SHUFFLES:
        raise ValueError(
            f"loader state: field 'shuffle' must be one of {SHUFFLES}, got {state['shuffle']!r}"
        )
    for name in ("window", "group"):
        _int(state, name, minimum=0)
    dataset = state["dataset"]
    if not isinstance(dataset, Mapping):
        raise ValueError(f"loader state: field 'dataset' must be a dict, got {_kind(dataset)}")
    _same_fields(dataset, _DATASET_FIELDS, "dataset.")
    for name in _DATASET_FIELDS:
        if not _equal(dataset[name], expected["dataset"][name]):
            raise ValueError(
                f"loader state: field 'dataset.{name}' does not match this dataset: the state "
                f"has {dataset[name]!r}, this dataset {expected['dataset'][name]!r}"
            )
    for name in ("seed", "shuffle", "window", "group"):
        if not _equal(state[name], expected[name]):
            raise ValueError(
                f"loader state: field {name!r} does not match this loader: the state has "
                f"{state[name]!r}, this loader {expected[name]!r} (the position refers to "
                "the order of the state's settings)"
            )
    if position > int(expected["dataset"]["length"]):
        raise ValueError(
            f"loader state: field 'position' ({position}) exceeds the dataset's length "
            f"({expected['dataset']['length']})"
        )
    return epoch, position


def _kind(value: Any) -> str:
    return type(value).__name__


def _same_fields(state: Mapping[Any, Any], fields: tuple[str, ...], prefix: str) -> None:
    for name in fields:
        if name not in state:
            raise ValueError(f"loader state: missing field '{prefix}{name}'")
    for name in state:
        if name not in fields:
            raise ValueError(f"loader state: unknown field '{prefix}{name}'")


def _int(state: Mapping[str, Any], name: str, minimum: int | None = None) -> int:
    value = state[name]
    # bool is an int subclass: a true/false where a number belongs is corruption.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"loader state: field {name!r} must be an int, got {_kind(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"loader state: field {name!r} must be >= {minimum}, got {value}")
    return int(value)


def _equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: tuples equal lists, dicts compare in order (the first array is
    the reference), and bools are not numbers."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            return False
        return list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
            return False
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    numbers = (int, np.integer)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return int(a) == int(b)
    return type(a) is type(b) and bool(a == b)
