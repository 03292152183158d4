"""The order of an epoch's samples and each rank's share of it (torch-free).

An epoch's *global order* is a permutation of the sample indices ``0 .. n-1`` that depends only
on ``(seed, epoch)`` (and, with window shuffling, on the frames the dataset draws in that
epoch), never on the number of ranks. The ranks consume it together, in *steps* of
``world_size * batch_size`` samples: at each step rank ``r`` takes the ``r``-th slice of
``batch_size`` samples. A *position* (the samples consumed by all ranks together since the
start of the epoch) is therefore the same on every rank and means the same for any world size:
the rest of the epoch, ``order[position:]``, can be shared out among another number of ranks.

The last step of an epoch may be short: it is padded (with the first samples of the part of
the epoch the ranks started from, as ``DistributedSampler`` pads) to a multiple of
``world_size``, and every rank gets an equal, contiguous slice; ``drop_last`` drops it instead.
"""

from __future__ import annotations

import math
from typing import Literal, TypeAlias

import numpy as np

__all__ = [
    "SHUFFLES",
    "Shuffle",
    "batch_count",
    "epoch_order",
    "position_after",
    "rank_batches",
    "shuffle_mode",
    "window_order",
]

#: How an epoch's samples are ordered: ``"none"`` 0, 1, 2, ...; ``"random"`` a random
#: permutation; ``"window"`` a random order whose groups of consecutive samples each come
#: from one window of frames (locality-aware).
Shuffle: TypeAlias = Literal["none", "random", "window"]
SHUFFLES: tuple[Shuffle, ...] = ("none", "random", "window")


def shuffle_mode(shuffle: bool | str) -> Shuffle:
    """``shuffle`` as one of :data:`SHUFFLES` (``True`` is ``"random"``, ``False``
    ``"none"``); ``ValueError`` for anything else."""
    if isinstance(shuffle, (bool, np.bool_)):
        return "random" if shuffle else "none"
    for mode in SHUFFLES:
        if shuffle == mode:
            return mode
    raise ValueError(f"shuffle must be True, False or one of {SHUFFLES}, got {shuffle!r}")


def epoch_order(
    length: int,
    *,
    seed: int,
    epoch: int,
    shuffle: Shuffle,
    frames: np.ndarray | None = None,
    window: int = 1,
    group: int = 1,
) -> np.ndarray:
    """The global order (int64, a permutation of ``range(length)``) of epoch ``epoch``.

    ``"random"`` is ``np.random.default_rng([seed, epoch]).permutation(length)``; ``"window"``
    needs ``frames``, the first frame of every sample in this epoch (see :func:`window_order`).
    """
    if shuffle == "none":
        return np.arange(length, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    if shuffle == "random":
        return np.asarray(rng.permutation(length), dtype=np.int64)
    if frames is None or len(frames) != length:
        raise ValueError("window shuffling needs the first frame of every sample")
    return window_order(np.asarray(frames, dtype=np.int64), rng, window=window, group=group)


def window_order(
    frames: np.ndarray, rng: np.random.Generator, *, window: int, group: int
) -> np.ndarray:
    """A random order in which each group of ``group`` consecutive samples (aligned on
    multiples of ``group``) comes from one window of ``window`` frames, as far as possible.

    Samples ``i`` are binned by window ``frames[i] // window`` and shuffled within their window;
    each window is cut into groups of ``group`` samples, and what is left over in every window
    (fewer than ``group`` samples) is pooled, in window order, and cut into groups too, of
    neighbouring windows. The full groups are then shuffled; the one short group left, if
    any, comes last. Every sample appears once.
    """
    if window < 1 or group < 1:
        raise ValueError(f"window and group must be >= 1, got {window} and {group}")
    n = int(frames.shape[0])
    perm = rng.permutation(n)
    # Stable sort by window: within a window, samples keep the random order of perm.
    bins = frames[perm] // window
    perm = perm[np.argsort(bins, kind="stable")]
    bins = np.sort(bins, kind="stable")
    edges = np.flatnonzero(np.diff(bins)) + 1
    groups: list[np.ndarray] = []
    leftover: list[np.ndarray] = []
    for members in np.split(perm, edges) if n else []:
        full = len(members) - len(members) % group
        groups.extend(np.split(members[:full], full // group) if full else [])
        leftover.append(members[full:])
    pooled = np.concatenate(leftover) if leftover else np.zeros(0, dtype=np.int64)
    full = len(pooled) - len(pooled) % group
    groups.extend(np.split(pooled[:full], full // group) if full else [])
    tail = pooled[full:]
    shuffled = [groups[g] for g in rng.permutation(len(groups)).tolist()]
    return np.asarray(np.concatenate([*shuffled, tail]), dtype=np.int64)


def batch_count(remaining: int, *, world_size: int, batch_size: int, drop_last: bool) -> int:
    """Batches each rank gets from ``remaining`` samples of the global order."""
    step = world_size * batch_size
    return remaining // step if drop_last else math.ceil(remaining / step)


def rank_batches(
    order: np.ndarray,
    position: int,
    *,
    rank: int,
    world_size: int,
    batch_size: int,
    drop_last: bool,
) -> list[np.ndarray]:
    """The batches (sample indices) of rank ``rank`` for ``order[position:]``.

    Step ``s`` covers ``rest[s*W*B : (s+1)*W*B]`` (``W`` ranks, batches of ``B``); rank ``r``
    takes ``rest[s*W*B + r*B : s*W*B + (r+1)*B]``. A short last step of ``L`` samples is padded
    with the first samples of ``rest`` to ``W * ceil(L / W)``, of which rank ``r`` takes the
    ``r``-th slice (or dropped with ``drop_last``).
    """
    rest = np.asarray(order[position:], dtype=np.int64)
    step = world_size * batch_size
    full = len(rest) // step
    out = [
        rest[s * step + rank * batch_size : s * step + (rank + 1) * batch_size] for s in range(full)
    ]
    tail = rest[full * step :]
    if len(tail) and not drop_last:
        per = math.ceil(len(tail) / world_size)
        padded = np.concatenate([tail, np.resize(rest, per * world_size - len(tail))])
        out.append(padded[rank * per : (rank + 1) * per])
    return out


def position_after(
    start: int, batches: int, *, length: int, world_size: int, batch_size: int
) -> int:
    """The position (samples consumed by all ranks) after ``batches`` batches from ``start``;
    the last, short step consumes the rest of the epoch."""
    return min(length, start + batches * world_size * batch_size)
