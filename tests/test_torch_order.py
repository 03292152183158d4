"""zarrcrop.torch.order, without torch: the global order of an epoch (none, random, window),
each rank's share of it, and resuming from a position with another number of ranks (property
tests). The hypothesis profile is conftest's "zarrcrop" (no deadline, derandomized)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from zarrcrop.torch.order import (
    batch_count,
    epoch_order,
    position_after,
    rank_batches,
    shuffle_mode,
    window_order,
)


def _epoch_share(order, position, world, batch, drop_last=False, stop=None):
    """Every rank's batches from ``position`` (the first ``stop`` of each, if given)."""
    return [
        rank_batches(
            order, position, rank=r, world_size=world, batch_size=batch, drop_last=drop_last
        )[:stop]
        for r in range(world)
    ]


def test_shuffle_modes():
    assert shuffle_mode(True) == "random" and shuffle_mode(np.True_) == "random"
    assert shuffle_mode(False) == "none"
    assert shuffle_mode("window") == "window"
    for bad in ("windowed", 1, None):
        with pytest.raises(ValueError, match="shuffle"):
            shuffle_mode(bad)  # type: ignore[arg-type]


def test_orders_depend_on_seed_and_epoch_only():
    a = epoch_order(50, seed=1, epoch=2, shuffle="random")
    assert sorted(a.tolist()) == list(range(50))
    assert np.array_equal(a, epoch_order(50, seed=1, epoch=2, shuffle="random"))
    assert not np.array_equal(a, epoch_order(50, seed=1, epoch=3, shuffle="random"))
    assert not np.array_equal(a, epoch_order(50, seed=2, epoch=2, shuffle="random"))
    assert epoch_order(5, seed=1, epoch=2, shuffle="none").tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="frame"):
        epoch_order(5, seed=1, epoch=2, shuffle="window")


def test_rank_shares_are_contiguous_slices_of_each_step():
    order = np.arange(23)
    shares = _epoch_share(order, 0, 4, 2)
    assert [[b.tolist() for b in s] for s in shares] == [
        [[0, 1], [8, 9], [16, 17]],
        [[2, 3], [10, 11], [18, 19]],
        [[4, 5], [12, 13], [20, 21]],
        [[6, 7], [14, 15], [22, 0]],  # the short last step is padded with the first sample
    ]
    assert all(len(s) == 2 for s in _epoch_share(order, 0, 4, 2, drop_last=True))
    assert position_after(0, 2, length=23, world_size=4, batch_size=2) == 16
    assert position_after(0, 3, length=23, world_size=4, batch_size=2) == 23
    # Fewer samples than ranks: every rank still gets one (padded by cycling).
    tiny = _epoch_share(np.arange(2), 0, 3, 4)
    assert [s[0].tolist() for s in tiny] == [[0], [1], [0]]


@given(
    n=st.integers(0, 90),
    batch=st.integers(1, 6),
    worlds=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    steps=st.integers(0, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_resume_on_another_world_size_sees_every_sample_once(n, batch, worlds, steps, seed):
    """Save after ``steps`` steps on ``w1`` ranks, resume on ``w2``: together every sample of
    the epoch once, plus the padding of the last step only."""
    w1, w2 = worlds
    order = epoch_order(n, seed=seed, epoch=3, shuffle="random")
    steps = min(steps, n // (w1 * batch))  # a save happens between full steps
    before = _epoch_share(order, 0, w1, batch, stop=steps)
    position = position_after(0, steps, length=n, world_size=w1, batch_size=batch)
    after = _epoch_share(order, position, w2, batch)
    seen = Counter(int(i) for share in before + after for b in share for i in b)
    assert set(seen) == set(range(n))
    rest = n - position
    tail = rest % (w2 * batch)
    padding = w2 * math.ceil(tail / w2) - tail
    assert seen.total() == n + padding and padding < w2
    # Ranks advance in step: the same number of batches, of the same size, on every rank.
    assert len({len(share) for share in after}) == 1
    assert all(len(share) == batch_count(rest, world_size=w2, batch_size=batch, drop_last=False)
               for share in after)  # fmt: skip
    for step in zip(*after, strict=True):
        assert len({len(b) for b in step}) == 1
    # The order seen is the global order: step by step, ranks in turn.
    flat = [int(i) for step in zip(*before, strict=True) for b in step for i in b]
    flat += [int(i) for step in zip(*after, strict=True) for b in step for i in b]
    assert flat[:n] == order.tolist()


@given(
    n=st.integers(0, 90),
    batch=st.integers(1, 6),
    world=st.integers(1, 4),
    steps=st.integers(0, 30),
)
def test_drop_last_never_repeats(n, batch, world, steps):
    order = epoch_order(n, seed=0, epoch=0, shuffle="random")
    position = min(steps * world * batch, n - n % (world * batch))
    shares = _epoch_share(order, position, world, batch, drop_last=True)
    flat = [int(i) for share in shares for b in share for i in b]
    assert len(flat) == len(set(flat)) == (n - position) // (world * batch) * world * batch
    assert all(len(b) == batch for share in shares for b in share)


@given(
    frames=st.lists(st.integers(0, 11), max_size=120),
    window=st.integers(1, 4),
    group=st.integers(1, 8),
    seed=st.integers(0, 1000),
)
def test_window_order_groups_share_a_window(frames, window, group, seed):
    t = np.asarray(frames, dtype=np.int64)
    order = window_order(t, np.random.default_rng(seed), window=window, group=group)
    assert sorted(order.tolist()) == list(range(len(t)))
    assert np.array_equal(order, window_order(t, np.random.default_rng(seed), window=window,
                                              group=group))  # fmt: skip
    # A window's samples fill whole groups of their own (aligned on multiples of group),
    # except the remainders of each window, pooled into groups of neighbouring windows.
    counts = Counter((t // window).tolist())
    own = sum(c - c % group for c in counts.values())
    groups = [order[i : i + group] for i in range(0, len(order), group)]
    single = sum(len(g) for g in groups if len(g) == group and len(set(t[g] // window)) == 1)
    assert single >= own
    pooled = sorted(c % group for c in counts.values())
    mixed = [g for g in groups if len(set(t[g] // window)) > 1]
    assert len(mixed) <= max(0, len([p for p in pooled if p]) - 1)


def test_window_order_mixes_windows_across_groups():
    """Windows are not visited one after the other: the groups of all windows are shuffled."""
    t = np.repeat(np.arange(10), 40)
    order = window_order(t, np.random.default_rng(0), window=1, group=4)
    windows = t[order[::4]]
    changes = int(np.count_nonzero(np.diff(windows)))
    assert changes > len(windows) // 2  # consecutive groups mostly from different frames
    assert all(len(set(t[order[i : i + 4]])) == 1 for i in range(0, len(order), 4))
    with pytest.raises(ValueError):
        window_order(t, np.random.default_rng(0), window=0, group=4)
