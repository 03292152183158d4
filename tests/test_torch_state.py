"""zarrcrop.torch state: CropLoader / CropSampler state_dict round trips (resuming yields
exactly the batches an uninterrupted loader yields next, on the same or another number of
ranks), epochs, locality-aware ("window") shuffling, DataLoader and StatefulDataLoader in
process, and the errors of states that do not fit (each names its field)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, default_collate  # noqa: E402
from zarrcrop.torch import CropDataset, CropLoader, CropSampler  # noqa: E402
from zarrcrop.torch.state import STATE_VERSION  # noqa: E402

T, C, H, W = 6, 3, 32, 48
#: torchdata's StatefulDataLoader calls a deprecated torch function when it is created.
SET_VITAL = "ignore:'set_vital' is deprecated:UserWarning"


@pytest.fixture
def data(tmp_path) -> Path:
    """hr (6, 3, 32, 48) uint8 chunks (1, 3, 16, 16) and lr = hr[..., ::2, ::2]."""
    path = tmp_path / "tiny.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    hr = np.random.default_rng(5).integers(0, 256, size=(T, C, H, W), dtype=np.uint8)
    blosc = numcodecs.Blosc(cname="lz4", clevel=1)
    for name, values, chunks in (
        ("hr", hr, (1, 3, 16, 16)),
        ("lr", np.ascontiguousarray(hr[..., ::2, ::2]), (1, 3, 8, 8)),
    ):
        arr = group.create_array(
            name, shape=values.shape, chunks=chunks, dtype="uint8", compressors=blosc
        )
        arr[...] = values
    return path


def _dataset(path: Path, **kwargs) -> CropDataset:
    group = zarrcrop.open_group(path)
    options = {"crop": 8, "length": 45, "flips": True, "seed": 3, **kwargs}
    return CropDataset({"hr": group["hr"], "lr": group["lr"]}, **options)


def _same(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _run(loader, epochs, stop=None):
    """(batches, state after `stop` batches or None): the loop of a training script."""
    out = []
    for epoch in range(loader.epoch, epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            out.append({k: v.clone() for k, v in batch.items()})
            if stop is not None and len(out) == stop:
                return out, json.loads(json.dumps(loader.state_dict()))
    return out, None


# -- round trips -----------------------------------------------------------------------------


def test_state_is_a_small_json_dict_the_same_on_every_rank(data):
    ds = _dataset(data)
    states = []
    for rank in range(3):
        loader = CropLoader(ds, 4, rank=rank, world_size=3, epoch=2)
        it = iter(loader)
        next(it), next(it)
        states.append(loader.state_dict())
        it.close()
    assert states[0] == states[1] == states[2]
    state = states[0]
    assert json.loads(json.dumps(state)) == state and len(json.dumps(state)) < 1000
    assert state["version"] == STATE_VERSION
    assert (state["epoch"], state["position"], state["world_size"]) == (2, 24, 3)
    assert state["dataset"] == {
        "length": 45,
        "arrays": {"hr": [T, C, H, W], "lr": [T, C, H // 2, W // 2]},
        "dtypes": {"hr": "|u1", "lr": "|u1"},
        "crop": [8, 8],
        "frames": 1,
        "flips": True,
        "seed": 3,
    }
    assert (state["shuffle"], state["seed"], state["window"], state["group"]) == ("random", 3, 0, 0)


@pytest.mark.parametrize(
    ("shuffle", "drop_last", "frames"),
    [("random", False, 1), ("none", True, 1), ("window", False, 2), ("window", True, 1)],
)
def test_resume_at_every_step_yields_the_uninterrupted_batches(data, shuffle, drop_last, frames):
    ds = _dataset(data, frames=frames)
    reference, _ = _run(CropLoader(ds, 4, shuffle=shuffle, drop_last=drop_last), 2)
    assert len(reference) == 2 * (11 if drop_last else 12)
    for stop in range(1, len(reference) + 1):
        first, state = _run(CropLoader(ds, 4, shuffle=shuffle, drop_last=drop_last), 2, stop)
        restored = CropLoader(_dataset(data, frames=frames), 4, shuffle=shuffle,
                              drop_last=drop_last)  # fmt: skip
        if state is not None:
            restored.load_state_dict(state)
            assert (restored.epoch, restored.position) == (state["epoch"], state["position"])
        rest, _ = _run(restored, 2)
        got = first + rest
        assert len(got) == len(reference), stop
        assert all(_same(a, b) for a, b in zip(got, reference, strict=True)), stop


def test_resume_on_another_world_size(data):
    """2 ranks save mid-epoch, 3 resume (and 3 -> 2): every sample once, plus padding."""
    ds = _dataset(data, length=50)
    ds.set_epoch(1)  # for the expected samples, ds[i]
    for before, after in ((2, 3), (3, 2)):
        seen: list[int] = []
        loaders = [CropLoader(ds, 4, rank=r, world_size=before, epoch=1) for r in range(before)]
        for loader in loaders:
            it = iter(loader)
            for batch in loader.batches()[:2]:
                assert _same(next(it), default_collate([ds[int(i)] for i in batch]))
                seen += batch.tolist()
            it.close()
        state = loaders[0].state_dict()
        assert state["position"] == 2 * before * 4
        for rank in range(after):
            loader = CropLoader(ds, 4, rank=rank, world_size=after, drop_last=False, copy=True)
            loader.load_state_dict(state)
            loader.set_epoch(1)  # the epoch of the state: keeps its position
            batches = loader.batches(position=state["position"])
            got = list(loader)
            assert len(got) == len(batches)
            for batch, idx in zip(got, batches, strict=True):
                assert _same(batch, default_collate([ds[int(i)] for i in idx]))
                seen += idx.tolist()
            assert loader.position == 50
        counts = np.bincount(seen, minlength=50)
        assert counts.min() == 1 and counts.sum() - 50 < after


def test_epochs_and_set_epoch(data):
    ds = _dataset(data)
    loader = CropLoader(ds, 4, copy=True)
    assert (loader.epoch, loader.position, len(loader)) == (0, 0, 11)
    first = list(loader)
    assert loader.position == 45  # the epoch is over (the dropped tail included)
    again = list(loader)  # iterating again replays the epoch
    assert all(_same(a, b) for a, b in zip(first, again, strict=True))
    state = loader.state_dict()
    loader.set_epoch(0)  # the same epoch: nothing moves
    assert loader.position == 45
    loader.set_epoch(1)
    assert (loader.epoch, loader.position) == (1, 0)
    # A state at the end of an epoch resumes nothing of it; the next epoch starts whole.
    restored = CropLoader(_dataset(data), 4, copy=True)
    restored.load_state_dict(state)
    assert list(restored) == []
    restored.set_epoch(1)
    assert len(list(restored)) == 11
    # A restored position is used once: a second iteration starts at the beginning.
    restored.load_state_dict({**state, "position": 44})
    assert len(list(restored)) == 0 and len(list(restored)) == 11
    restored.epoch = 3  # the setter is set_epoch
    assert (restored.epoch, restored.position) == (3, 0)


def test_an_old_iterator_does_not_move_the_position(data):
    ds = _dataset(data)
    loader = CropLoader(ds, 4)
    old = iter(loader)
    next(old)
    new = iter(loader)
    next(new), next(new)
    next(old), next(old)
    assert loader.position == 8
    state = loader.state_dict()
    loader.load_state_dict(state)
    next(new)
    assert loader.position == 8  # an iterator from before the load no longer reports
    old.close(), new.close()


def test_window_shuffle_draws_batches_from_one_window(data):
    ds = _dataset(data, length=120)
    assert ds.file_frames == 1
    loader = CropLoader(ds, 4, shuffle="window", seed=9)
    assert (loader.shuffle, loader.window) == ("window", 1)
    frames = ds.sample_plan(range(120)).t
    batches = loader.batches()
    one_frame = [len(set(frames[b].tolist())) == 1 for b in batches]
    assert sum(one_frame) >= len(batches) - T  # all but the pooled remainders of each frame
    assert sorted(np.concatenate(batches).tolist()) == list(range(120))
    # Every sample once, in another order than the random shuffle, per epoch.
    assert not np.array_equal(loader.order(0), CropLoader(ds, 4, seed=9).order(0))
    assert not np.array_equal(loader.order(0), loader.order(1))
    wide = CropLoader(ds, 4, shuffle="window", window=3)
    assert all(len(set((frames[b] // 3).tolist())) == 1 for b in wide.batches()[:10])
    with pytest.raises(ValueError, match="window"):
        CropLoader(ds, 4, window=2)
    with pytest.raises(ValueError, match="window"):
        CropLoader(ds, 4, shuffle="window", window=0)
    with pytest.raises(ValueError, match="shuffle"):
        CropLoader(ds, 4, shuffle="frames")  # type: ignore[arg-type]


def test_file_frames_of_sharded_arrays(tmp_path):
    arr = zarr.create_array(
        str(tmp_path / "s.zarr"), shape=(8, 1, 8, 8), chunks=(1, 1, 4, 4), shards=(4, 1, 8, 8),
        dtype="uint8",
    )  # fmt: skip
    assert CropDataset(arr, crop=4).file_frames == 4
    assert CropLoader(CropDataset(arr, crop=4), 2, shuffle="window").window == 4


# -- CropSampler: DataLoader and StatefulDataLoader ----------------------------------------


def test_sampler_batches_equal_the_loaders(data):
    ds = _dataset(data)
    for shuffle in ("random", "window"):
        loader = CropLoader(ds, 4, shuffle=shuffle, drop_last=False, epoch=1, copy=True)
        sampler = CropSampler(_dataset(data), 4, shuffle=shuffle, drop_last=False, epoch=1)
        assert len(sampler) == len(loader) == 12
        assert [b.tolist() for b in sampler.batches()] == list(sampler)
        assert list(sampler) == [b.tolist() for b in loader.batches()]
        dl = DataLoader(sampler.dataset, batch_sampler=sampler)
        assert all(_same(a, b) for a, b in zip(dl, loader, strict=True))
    sampler = CropSampler(ds, 4)
    sampler.set_epoch(4)
    assert ds.epoch == 4  # the sampler sets the dataset's epoch
    with pytest.raises(TypeError):
        CropSampler(object(), 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("persistent", [False, True])
def test_sampler_state_with_plain_dataloader_workers(data, persistent):
    """Workers read ahead of the loop: state_dict(batches=k) is the state after k batches,
    and a DataLoader with workers over the restored sampler yields the batches after them."""
    ds = _dataset(data)
    reference = list(CropLoader(ds, 4, copy=True, epoch=1))
    sampler = CropSampler(ds, 4, epoch=1)
    options = {"num_workers": 2, "multiprocessing_context": "fork", "timeout": 60}
    it = iter(DataLoader(ds, batch_sampler=sampler, **options))
    for _ in range(3):
        next(it)
    ahead, state = sampler.state_dict(), sampler.state_dict(batches=3)
    del it
    assert state["position"] == 12 and ahead["position"] > 12
    with pytest.raises(ValueError, match="batches"):
        sampler.state_dict(batches=-1)
    fresh = _dataset(data)
    restored = CropSampler(fresh, 4)
    restored.load_state_dict(state)
    assert fresh.epoch == 1  # the sampler set the dataset's epoch
    dl = DataLoader(fresh, batch_sampler=restored, persistent_workers=persistent, **options)
    got = list(dl)
    assert len(got) == len(reference) - 3
    assert all(_same(a, b) for a, b in zip(got, reference[3:], strict=True))
    if persistent:  # the next epoch, on the same workers, is whole
        restored.set_epoch(2)
        assert len(list(dl)) == len(reference)
    del dl


@pytest.mark.filterwarnings(SET_VITAL)
def test_sampler_with_stateful_dataloader_in_process(data):
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    ds = _dataset(data)
    reference = list(CropLoader(ds, 4, shuffle="window", copy=True))
    sampler = CropSampler(ds, 4, shuffle="window")
    dl = stateful.StatefulDataLoader(ds, batch_sampler=sampler)
    it = iter(dl)
    first = [next(it) for _ in range(5)]
    state = json.loads(json.dumps(dl.state_dict()))
    fresh = _dataset(data)
    dl2 = stateful.StatefulDataLoader(fresh, batch_sampler=CropSampler(fresh, 4, shuffle="window"))
    dl2.load_state_dict(state)
    got = first + list(dl2)
    assert all(_same(a, b) for a, b in zip(got, reference, strict=True))
    assert len(got) == len(reference)


# -- errors -----------------------------------------------------------------------------------


def _state(data, **kwargs):
    loader = CropLoader(_dataset(data), 4, **kwargs)
    it = iter(loader)
    next(it)
    it.close()
    return loader.state_dict()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.pop("version"), "missing field 'version'"),
        (lambda s: s.update(version=STATE_VERSION + 1), "'version' is 2, a newer format"),
        (lambda s: s.update(version="1"), "'version' must be an int"),
        (lambda s: s.update(version=0), "'version' must be >= 1"),
        (lambda s: s.pop("position"), "missing field 'position'"),
        (lambda s: s.update(extra=1), "unknown field 'extra'"),
        (lambda s: s.update(position=-4), "'position' must be >= 0"),
        (lambda s: s.update(position=46), "'position' .46. exceeds"),
        (lambda s: s.update(position=4.0), "'position' must be an int"),
        (lambda s: s.update(epoch=True), "'epoch' must be an int"),
        (lambda s: s.update(world_size=0), "'world_size' must be >= 1"),
        (lambda s: s.update(batch_size=None), "'batch_size' must be an int"),
        (lambda s: s.update(shuffle="sorted"), "'shuffle' must be one of"),
        (lambda s: s.update(dataset=[]), "'dataset' must be a dict"),
        (lambda s: s["dataset"].pop("crop"), "missing field 'dataset.crop'"),
        (lambda s: s["dataset"].update(length=44), "'dataset.length' does not match"),
        (lambda s: s["dataset"].update(crop=[8, 16]), "'dataset.crop' does not match"),
        (lambda s: s["dataset"].update(frames=2), "'dataset.frames' does not match"),
        (lambda s: s["dataset"].update(flips=1), "'dataset.flips' does not match"),
        (lambda s: s["dataset"].update(seed=4), "'dataset.seed' does not match"),
        (lambda s: s["dataset"]["arrays"].update(hr=[6, 3, 32, 40]), "'dataset.arrays'"),
        (lambda s: s["dataset"]["arrays"].pop("hr"), "'dataset.arrays' does not match"),
        (lambda s: s["dataset"]["dtypes"].update(lr="<u2"), "'dataset.dtypes' does not match"),
        (lambda s: s.update(seed=7), "field 'seed' does not match this loader"),
        (lambda s: s.update(shuffle="none"), "field 'shuffle' does not match this loader"),
    ],
)
def test_corrupt_or_foreign_states_raise_naming_the_field(data, edit, match):
    state = copy.deepcopy(_state(data))
    edit(state)
    loader = CropLoader(_dataset(data), 4)
    with pytest.raises(ValueError, match=match):
        loader.load_state_dict(state)
    assert (loader.epoch, loader.position) == (0, 0)  # nothing changed
    with pytest.raises(ValueError, match=match):
        CropSampler(_dataset(data), 4).load_state_dict(state)


def test_states_of_other_datasets_and_orders_raise(data):
    state = _state(data)
    for kwargs, field in (
        ({"length": 60}, "dataset.length"),
        ({"crop": 16}, "dataset.crop"),
        ({"frames": 2}, "dataset.frames"),
        ({"flips": False}, "dataset.flips"),
    ):
        with pytest.raises(ValueError, match=rf"'{field}' does not match this dataset"):
            CropLoader(_dataset(data, **kwargs), 4).load_state_dict(state)
    group = zarrcrop.open_group(data)
    for arrays in ({"hr": group["hr"]}, {"lr": group["lr"], "hr": group["hr"]}):
        ds = CropDataset(arrays, crop=8, length=45, flips=True, seed=3)
        with pytest.raises(ValueError, match=r"'dataset\.arrays' does not match"):
            CropLoader(ds, 4).load_state_dict(state)
    window = _state(data, shuffle="window")
    with pytest.raises(ValueError, match="field 'group' does not match"):
        CropLoader(_dataset(data), 8, shuffle="window").load_state_dict(window)
    with pytest.raises(ValueError, match="field 'window' does not match"):
        CropLoader(_dataset(data), 4, shuffle="window", window=2).load_state_dict(window)
    with pytest.raises(ValueError, match="must be a dict"):
        CropLoader(_dataset(data), 4).load_state_dict(json.dumps(state))  # type: ignore[arg-type]
    # What may differ: the rank, the world size, the batch size of the "random" order.
    CropLoader(_dataset(data), 8, rank=1, world_size=2).load_state_dict(state)
