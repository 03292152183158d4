"""zarrcrop.torch: CropDataset (alignment, frames, determinism, flips, DataLoader workers,
DistributedSampler) and CropLoader (batches, epochs, ranks, shutdown, errors, pinned memory)."""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarrcrop

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, DistributedSampler, default_collate  # noqa: E402
from zarrcrop.torch import CropDataset, CropLoader  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
THREAD_NAME = "zarrcrop-CropLoader"
T, C, H, W = 5, 3, 96, 144


def _compressor() -> numcodecs.Blosc:
    return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)


@pytest.fixture
def multires(tmp_path):
    """hr (5, 3, 96, 144) uint8; lr = hr[..., ::3, ::3] and mid = hr[..., ::2, ::2] stored as
    separate arrays with other chunkings; flow (5, 2, 48, 72) float32 = 2x subsample. Returns
    (group path, dict of numpy data)."""
    path = tmp_path / "multi.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    rng = np.random.default_rng(7)
    hr = rng.integers(0, 256, size=(T, C, H, W), dtype=np.uint8)
    flow_full = rng.standard_normal((T, 2, H, W)).astype(np.float32)
    data = {
        "hr": hr,
        "lr": np.ascontiguousarray(hr[..., ::3, ::3]),
        "mid": np.ascontiguousarray(hr[..., ::2, ::2]),
        "flow": np.ascontiguousarray(flow_full[..., ::2, ::2]),
    }
    chunks = {
        "hr": (1, 3, 40, 40),
        "lr": (1, 3, 16, 16),
        "mid": (2, 3, 20, 30),
        "flow": (1, 2, 24, 24),
    }
    for name, values in data.items():
        arr = group.create_array(
            name,
            shape=values.shape,
            chunks=chunks[name],
            dtype=values.dtype,
            compressors=_compressor(),
        )
        arr[...] = values
    return path, data


def _open(path: Path, *names: str) -> dict[str, zarrcrop.CropArray]:
    group = zarrcrop.open_group(path)
    return {name: group[name] for name in names}


def _expected(data: np.ndarray, t: int, y: int, x: int, shape, frames: int, hf=False, vf=False):
    k, _, h, w = shape
    crop = data[t : t + k, :, y : y + h, x : x + w]
    if hf:
        crop = crop[..., ::-1]
    if vf:
        crop = crop[..., ::-1, :]
    return crop if frames > 1 else crop[0]


def _alive_loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def _wait_no_loader_threads(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive_loader_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive_loader_threads()


def _assert_same(a, b) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b)
        for name in a:
            assert torch.equal(a[name], b[name]), name
    else:
        assert torch.equal(a, b)


# -- import --------------------------------------------------------------------------------


def test_import_zarrcrop_does_not_import_torch():
    code = "import sys, zarrcrop; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- CropDataset ---------------------------------------------------------------------------


@pytest.mark.parametrize("flips", [False, True])
def test_alignment_across_resolutions(multires, flips):
    path, data = multires
    arrays = _open(path, "hr", "lr", "mid", "flow")
    ds = CropDataset(arrays, crop=(48, 60), length=300, seed=3, flips=flips)
    assert ds.crop_shapes == {
        "hr": (1, 3, 48, 60),
        "lr": (1, 3, 16, 20),
        "mid": (1, 3, 24, 30),
        "flow": (1, 2, 24, 30),
    }
    plan = ds.sample_plan(range(len(ds)))
    # Positions snap to multiples of lcm(3, 2) = 6 and still cover the whole range.
    assert np.all(plan.y % 6 == 0) and np.all(plan.x % 6 == 0)
    assert plan.y.max() + 48 <= H and plan.x.max() + 60 <= W
    assert len(set(plan.t.tolist())) == T
    if flips:
        assert plan.hflip.any() and (~plan.hflip).any() and plan.vflip.any()
    else:
        assert not plan.hflip.any() and not plan.vflip.any()
    for i in range(len(ds)):
        sample = ds[i]
        t, y, x = int(plan.t[i]), int(plan.y[i]), int(plan.x[i])
        hf, vf = bool(plan.hflip[i]), bool(plan.vflip[i])
        hr = sample["hr"].numpy()
        assert sample["hr"].dtype == torch.uint8 and sample["flow"].dtype == torch.float32
        np.testing.assert_array_equal(hr, _expected(data["hr"], t, y, x, (1, 3, 48, 60), 1, hf, vf))
        # The crop pairs cover the same scene: the low resolutions are subsamples of hr
        # (flips included, when the flipped subsample grid matches).
        if not hf and not vf:
            np.testing.assert_array_equal(sample["lr"].numpy(), hr[..., ::3, ::3])
            np.testing.assert_array_equal(sample["mid"].numpy(), hr[..., ::2, ::2])
        for name, f in (("lr", 3), ("mid", 2), ("flow", 2)):
            expected = _expected(data[name], t, y // f, x // f, ds.crop_shapes[name], 1, hf, vf)
            np.testing.assert_array_equal(sample[name].numpy(), expected)


def test_reference_may_be_the_low_resolution(multires):
    path, _ = multires
    arrays = _open(path, "lr", "hr")
    ds = CropDataset(arrays, crop=10, length=50)
    assert ds.crop_shapes == {"lr": (1, 3, 10, 10), "hr": (1, 3, 30, 30)}
    for i in range(len(ds)):
        sample = ds[i]
        np.testing.assert_array_equal(sample["hr"].numpy()[..., ::3, ::3], sample["lr"].numpy())


def test_temporal_windows(multires):
    path, data = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, frames=3, length=60, seed=1)
    plan = ds.sample_plan(range(len(ds)))
    assert plan.t.max() <= T - 3 and plan.t.min() == 0
    assert ds.sample_shapes() == {"hr": (3, 3, 24, 24), "lr": (3, 3, 8, 8)}
    for i in range(len(ds)):
        sample = ds[i]
        t, y, x = int(plan.t[i]), int(plan.y[i]), int(plan.x[i])
        assert sample["hr"].shape == (3, 3, 24, 24)
        np.testing.assert_array_equal(
            sample["hr"].numpy(), data["hr"][t : t + 3, :, y : y + 24, x : x + 24]
        )
        np.testing.assert_array_equal(sample["lr"].numpy(), sample["hr"].numpy()[..., ::3, ::3])


def test_single_array_and_zarr_array_input(multires):
    path, data = multires
    zarr_array = zarr.open_array(str(path / "hr"), mode="r")
    ds = CropDataset(zarr_array, crop=(16, 32), length=20)
    assert ds.single
    plan = ds.sample_plan(range(20))
    for i in range(20):
        sample = ds[i]
        assert isinstance(sample, torch.Tensor) and sample.shape == (3, 16, 32)
        t, y, x = int(plan.t[i]), int(plan.y[i]), int(plan.x[i])
        np.testing.assert_array_equal(sample.numpy(), data["hr"][t, :, y : y + 16, x : x + 32])
    assert torch.equal(ds[-1], ds[19])
    with pytest.raises(IndexError):
        ds[20]


def test_default_length(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=48)
    assert len(ds) == T * (96 // 48) * (144 // 48)
    ds = CropDataset(_open(path, "hr")["hr"], crop=48, frames=2)
    assert len(ds) == (T - 1) * 6


def test_determinism_and_epochs(multires):
    path, _ = multires
    a = CropDataset(_open(path, "hr", "lr"), crop=24, length=40, seed=5, flips=True)
    b = CropDataset(_open(path, "hr", "lr"), crop=24, length=40, seed=5, flips=True)
    for i in (0, 7, 39):
        _assert_same(a[i], b[i])
        _assert_same(a[i], a[i])
    starts0 = a.sample_starts(range(40))
    a.set_epoch(1)
    starts1 = a.sample_starts(range(40))
    assert not np.array_equal(starts0["hr"], starts1["hr"])
    assert np.array_equal(starts1["hr"], b.sample_starts(range(40), epoch=1)["hr"])
    b.set_epoch(1)
    _assert_same(a[3], b[3])
    c = CropDataset(_open(path, "hr", "lr"), crop=24, length=40, seed=6)
    assert not np.array_equal(c.sample_starts(range(40))["hr"], b.sample_starts(range(40), 0)["hr"])
    # Flips do not change the positions drawn.
    d = CropDataset(_open(path, "hr", "lr"), crop=24, length=40, seed=5)
    assert np.array_equal(d.sample_starts(range(40))["hr"], starts0["hr"])


def test_sample_starts_feed_read_crops(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, frames=2, length=30)
    idx = [4, 0, 29, 11]
    starts = ds.sample_starts(idx)
    assert starts["hr"].dtype == np.int64 and starts["hr"].shape == (4, 4)
    for name, array in ds.arrays.items():
        batch = array.read_crops(starts[name], ds.crop_shapes[name])
        for j, i in enumerate(idx):
            np.testing.assert_array_equal(batch[j], ds[i][name].numpy())


@pytest.mark.parametrize(
    ("names", "crop", "match"),
    [
        (("hr", "odd"), 30, "not an integer multiple or fraction"),
        (("hr", "lr"), 32, "not a multiple of 3"),
        (("hr", "short"), 24, "frames"),
        (("hr",), 97, "does not fit"),
    ],
)
def test_invalid_layouts(multires, names, crop, match):
    path, _ = multires
    group = zarr.open_group(str(path), mode="a")
    group.create_array("odd", shape=(T, 3, 40, 72), chunks=(1, 3, 20, 20), dtype="uint8")
    group.create_array("short", shape=(T - 1, 3, 48, 72), chunks=(1, 3, 20, 20), dtype="uint8")
    arrays = _open(path, *names)
    with pytest.raises(ValueError, match=match):
        CropDataset(arrays, crop=crop)


def test_invalid_arguments(multires):
    path, _ = multires
    hr = _open(path, "hr")["hr"]
    with pytest.raises(ValueError, match="frames"):
        CropDataset(hr, crop=8, frames=0)
    with pytest.raises(ValueError, match="frames"):
        CropDataset(hr, crop=8, frames=T + 1)
    with pytest.raises(ValueError, match="crop"):
        CropDataset(hr, crop=(8, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        CropDataset({}, crop=8)
    with pytest.raises(TypeError):
        CropDataset(np.zeros((2, 3, 8, 8)), crop=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="4 dimensions"):
        CropDataset(zarrcrop.open(zarr.create_array({}, shape=(8, 8), dtype="uint8")), crop=4)


def test_pickle_roundtrip(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, frames=2, length=10, flips=True, seed=9)
    ds.set_epoch(2)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.epoch == 2
    for i in range(10):
        _assert_same(ds[i], clone[i])


def test_big_endian_arrays(tmp_path):
    """torch has no big-endian dtypes: samples and batches come back in native byte order."""
    group = zarr.open_group(str(tmp_path / "be.zarr"), mode="w", zarr_format=2)
    rng = np.random.default_rng(3)
    data = {
        "a": rng.integers(0, 60000, size=(3, 2, 32, 48)).astype(">u2"),
        "b": rng.standard_normal((3, 1, 16, 24)).astype(">f4"),
    }
    for name, values in data.items():
        arr = group.create_array(
            name, shape=values.shape, chunks=(1, 1, 10, 10), dtype=values.dtype
        )
        arr[...] = values
    ds = CropDataset(_open(tmp_path / "be.zarr", "a", "b"), crop=8, length=12, flips=True)
    plan = ds.sample_plan(range(12))
    for i in range(12):
        sample = ds[i]
        assert sample["a"].dtype == torch.uint16 and sample["b"].dtype == torch.float32
        t, y, x = int(plan.t[i]), int(plan.y[i]), int(plan.x[i])
        hf, vf = bool(plan.hflip[i]), bool(plan.vflip[i])
        expected = _expected(data["a"], t, y, x, (1, 2, 8, 8), 1, hf, vf)
        np.testing.assert_array_equal(sample["a"].numpy(), expected)
        expected = _expected(data["b"], t, y // 2, x // 2, (1, 1, 4, 4), 1, hf, vf)
        np.testing.assert_array_equal(sample["b"].numpy(), expected)
    loader = CropLoader(ds, 4, copy=True)
    for got, e in zip(loader, _expected_batches(ds, 4, loader.indices()), strict=True):
        _assert_same(got, e)
    for got, e in zip(ds.__getitems__(range(12)), [ds[i] for i in range(12)], strict=True):
        _assert_same(got, e)


# -- DataLoader workers --------------------------------------------------------------------


def _expected_batches(ds, batch_size: int, indices=None):
    indices = list(range(len(ds))) if indices is None else list(indices)
    return [
        default_collate([ds[i] for i in indices[j : j + batch_size]])
        for j in range(0, len(indices), batch_size)
    ]


def test_dataloader_fork_workers(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, frames=2, length=24, flips=True)
    ds[0]  # the parent has used the native reader (and its pool) before forking
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork", timeout=60)
    got = list(loader)
    expected = _expected_batches(ds, 4)
    assert len(got) == len(expected) == 6
    for g, e in zip(got, expected, strict=True):
        _assert_same(g, e)
    persistent = DataLoader(
        ds,
        batch_size=4,
        num_workers=2,
        multiprocessing_context="fork",
        persistent_workers=True,
        timeout=60,
    )
    _check_epochs(persistent, ds, 6)
    del persistent


def test_dataloader_spawn_persistent_workers(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, length=16, flips=True, worker_threads=1)
    loader = DataLoader(
        ds,
        batch_size=4,
        num_workers=2,
        multiprocessing_context="spawn",
        persistent_workers=True,
        timeout=120,
    )
    _check_epochs(loader, ds, 4)
    del loader


def _check_epochs(loader, ds, batches: int) -> None:
    firsts = []
    for epoch in range(2):  # the second epoch reuses the same workers
        ds.set_epoch(epoch)  # reaches the persistent workers (shared memory)
        expected = _expected_batches(ds, 4)
        got = list(loader)
        assert len(got) == batches
        for g, e in zip(got, expected, strict=True):
            _assert_same(g, e)
        firsts.append(got[0]["hr"])
    assert not torch.equal(firsts[0], firsts[1])


def test_distributed_sampler_partitions(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, length=22)
    world = 3
    seen: list[int] = []
    for rank in range(world):
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=1)
        sampler.set_epoch(0)
        indices = list(sampler)
        loader = DataLoader(ds, batch_size=4, sampler=sampler)
        for g, e in zip(loader, _expected_batches(ds, 4, indices), strict=True):
            _assert_same(g, e)
        seen += indices
    # 22 samples over 3 ranks: padded to 24 by repeating 2; every sample is covered.
    assert len(seen) == 24 and set(seen) == set(range(22))


# -- CropLoader ----------------------------------------------------------------------------


@pytest.mark.parametrize(("frames", "flips"), [(1, False), (1, True), (2, True)])
def test_loader_batches_match_dataset(multires, frames, flips):
    path, _ = multires
    ds = CropDataset(
        _open(path, "hr", "lr", "flow"), crop=24, frames=frames, length=26, flips=flips
    )
    loader = CropLoader(ds, 4, shuffle=True, seed=11, drop_last=False)
    assert len(loader) == 7
    batches = loader.batches()
    assert [len(b) for b in batches] == [4] * 6 + [2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(26))
    n = 0
    previous = None
    for b, batch in enumerate(loader):
        expected = default_collate([ds[i] for i in batches[b].tolist()])
        _assert_same(batch, expected)
        if previous is not None:  # the previous batch is still valid while this one is used
            _assert_same(*previous)
        previous = (batch, expected)
        n += 1
    assert n == 7
    _wait_no_loader_threads()


def test_loader_reuses_its_buffers_across_epochs_and_keeps_the_last_batches(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=16, length=12)
    loader = CropLoader(ds, 4, shuffle=True, seed=3, prefetch=2)
    first = list(loader)  # views of the ring: prefetch + 2 = 4 slots
    kept = first[-1].clone()
    ptrs = {b.data_ptr() for b in first}
    it = iter(loader)  # the next epoch: the same buffers, from the slot after the last one
    second = [next(it)]
    assert torch.equal(first[-1], kept)  # the previous epoch's last batch still holds
    second_clones = [second[0].clone()]
    for b in it:
        second.append(b)
        second_clones.append(b.clone())
    for got, e in zip(second_clones, _expected_batches(ds, 4, loader.indices()), strict=True):
        _assert_same(got, e)
    ptrs |= {b.data_ptr() for b in second} | {b.data_ptr() for b in loader}
    assert len(ptrs) == 4, ptrs  # three epochs, one ring
    _wait_no_loader_threads()


def test_loader_single_array_and_no_shuffle(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=(16, 32), length=12)
    loader = CropLoader(ds, 5, shuffle=False, drop_last=True, prefetch=1)
    assert len(loader) == 2
    got = list(loader)
    assert [b.shape for b in got] == [(5, 3, 16, 32)] * 2
    assert torch.equal(got[1], default_collate([ds[i] for i in range(5, 10)]))


def test_loader_epochs_and_seeds(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, length=16)
    loader = CropLoader(ds, 4, copy=True)
    first = list(loader)
    again = list(loader)
    for a, b in zip(first, again, strict=True):
        _assert_same(a, b)
    loader.set_epoch(1)
    second = list(loader)
    assert not torch.equal(first[0]["hr"], second[0]["hr"])
    assert not np.array_equal(loader.indices(0), loader.indices(1))
    # The loader's epoch selects the dataset's draws of that epoch.
    ds.set_epoch(1)
    for b, batch in zip(loader.batches(), second, strict=True):
        _assert_same(batch, default_collate([ds[i] for i in b.tolist()]))
    other = CropLoader(ds, 4, seed=123, epoch=1)
    assert not np.array_equal(other.indices(), loader.indices())


def test_loader_ranks_partition(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=24, length=23)
    world = 4
    all_indices = []
    for rank in range(world):
        loader = CropLoader(ds, 2, rank=rank, world_size=world, drop_last=False, seed=2)
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
        assert len(loader.indices()) == len(sampler) == 6
        all_indices.append(loader.indices())
        assert len(list(loader)) == len(loader) == 3
    flat = np.concatenate(all_indices)
    assert set(flat.tolist()) == set(range(23)) and len(flat) == 24
    # The global order 0..22 is consumed in steps of world * batch = 8 samples, rank r taking
    # the r-th pair of each; the short last step (16..22) is padded with sample 0.
    unshuffled = [
        [b.tolist() for b in CropLoader(ds, 2, shuffle=False, rank=r, world_size=world,
                                        drop_last=False).batches()]
        for r in range(world)
    ]  # fmt: skip
    assert unshuffled == [
        [[0, 1], [8, 9], [16, 17]],
        [[2, 3], [10, 11], [18, 19]],
        [[4, 5], [12, 13], [20, 21]],
        [[6, 7], [14, 15], [22, 0]],
    ]
    # drop_last drops the short last step on every rank.
    assert [len(CropLoader(ds, 2, rank=r, world_size=world)) for r in range(world)] == [2] * 4
    with pytest.raises(ValueError):
        CropLoader(ds, 2, rank=4, world_size=4)


def test_loader_copy_owns_memory(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=24, length=40)
    views = list(CropLoader(ds, 2, prefetch=1))
    copies = list(CropLoader(ds, 2, prefetch=1, copy=True))
    # Views share 3 buffers (prefetch + 2), so early batches were overwritten; copies not.
    pointers = {v.data_ptr() for v in views}
    assert len(pointers) == 3
    assert len({c.data_ptr() for c in copies}) == len(copies)
    expected = _expected_batches(ds, 2, CropLoader(ds, 2).indices())
    for c, e in zip(copies, expected, strict=True):
        assert torch.equal(c, e)


def test_loader_shutdown_on_break(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, length=200)
    for i, _batch in enumerate(CropLoader(ds, 2)):
        assert len(_alive_loader_threads()) == 1
        if i == 2:
            break
    _wait_no_loader_threads()


def test_loader_shutdown_on_exception(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, length=200)

    def train() -> None:
        for i, _batch in enumerate(CropLoader(ds, 2)):
            if i == 1:
                raise KeyError("training step failed")

    with pytest.raises(KeyError, match="training step failed"):
        train()
    gc.collect()
    _wait_no_loader_threads()


def test_loader_shutdown_on_del_and_close(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=24, length=200)
    loader = CropLoader(ds, 2)
    it = iter(loader)
    next(it)
    assert len(_alive_loader_threads()) == 1
    del it
    _wait_no_loader_threads()
    it = iter(loader)
    next(it)
    it.close()  # type: ignore[attr-defined]
    _wait_no_loader_threads()
    with pytest.raises(StopIteration):
        next(it)
    # Exhausting an iterator stops the thread too.
    it = iter(CropLoader(ds, 50))
    assert len(list(it)) == 4
    _wait_no_loader_threads()


def test_loader_surfaces_read_errors(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, length=40)
    # Corrupt every chunk of lr: the first batch already needs one.
    for chunk in (path / "lr").iterdir():
        if not chunk.name.startswith("."):
            chunk.write_bytes(b"\x02\x01\x21\x01" + os.urandom(40))
    loader = CropLoader(ds, 4)
    with pytest.raises(zarrcrop.ChunkError):
        for _batch in loader:
            pass
    _wait_no_loader_threads()
    with pytest.raises(zarrcrop.ChunkError):
        ds[0]


def test_loader_num_threads(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=24, length=8)
    assert len(list(CropLoader(ds, 4, num_threads=1))) == 2
    assert zarrcrop.get_num_threads() == 1


def test_loader_invalid_arguments(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=24, length=8)
    with pytest.raises(ValueError):
        CropLoader(ds, 0)
    with pytest.raises(ValueError):
        CropLoader(ds, 2, prefetch=0)
    with pytest.raises(TypeError):
        CropLoader(object(), 2)  # type: ignore[arg-type]


def test_loader_pin_memory(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, length=8)
    if torch.cuda.is_available():
        loader = CropLoader(ds, 4, pin_memory=True)
        batches = list(loader)
        assert all(t.is_pinned() for b in batches for t in b.values())
        expected = _expected_batches(ds, 4, loader.indices())
        for g, e in zip(batches, expected, strict=True):
            _assert_same(g, e)
    else:
        with pytest.warns(RuntimeWarning, match="CUDA is not available"):
            loader = CropLoader(ds, 4, pin_memory=True)
        assert not loader.pin_memory
        assert len(list(loader)) == 2


def test_loader_pinned_buffer_path_without_cuda(multires, monkeypatch):
    """The pinned-buffer code path (torch-allocated buffers read into through .numpy()),
    exercised on CPU-only machines by pretending CUDA exists and dropping pin_memory."""
    if torch.cuda.is_available():
        pytest.skip("covered by test_loader_pin_memory")
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "flow"), crop=24, frames=2, length=12, flips=True)
    requested = []
    real_empty = torch.empty

    def fake_empty(*args, pin_memory=False, **kwargs):
        requested.append(pin_memory)
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "empty", fake_empty)
    loader = CropLoader(ds, 4, pin_memory=True)
    assert loader.pin_memory
    batches = list(loader)
    assert requested and all(requested)
    monkeypatch.undo()
    for g, e in zip(batches, _expected_batches(ds, 4, loader.indices()), strict=True):
        _assert_same(g, e)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_loader_pinned_to_device(multires):
    path, _ = multires
    ds = CropDataset(_open(path, "hr")["hr"], crop=24, length=32)
    loader = CropLoader(ds, 4, pin_memory=True)
    expected = _expected_batches(ds, 4, loader.indices())
    for batch, e in zip(loader, expected, strict=True):
        assert batch.is_pinned()
        assert torch.equal(batch.to("cuda", non_blocking=True).cpu(), e)


# -- example -------------------------------------------------------------------------------


def test_example_train_sr_runs(tmp_path):
    script = REPO / "examples" / "train_sr.py"
    if not script.is_file():
        pytest.skip("examples/ not in this checkout")
    result = subprocess.run(
        [sys.executable, str(script), "--steps", "2", "--batch-size", "2", "--frames", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "crops/s" in result.stdout and "loss" in result.stdout


@pytest.mark.parametrize(("frames", "flips"), [(1, True), (3, False)])
def test_getitems_matches_getitem(multires, frames, flips):
    path, _ = multires
    ds = CropDataset(_open(path, "hr", "lr"), crop=24, frames=frames, length=30, flips=flips)
    idx = [5, 0, 29, 5, -1]
    got = ds.__getitems__(idx)
    assert len(got) == len(idx)
    for sample, i in zip(got, idx, strict=True):
        _assert_same(sample, ds[i])
    single = CropDataset(_open(path, "hr")["hr"], crop=24, length=30, flips=flips)
    for sample, i in zip(single.__getitems__(idx), idx, strict=True):
        assert torch.equal(sample, single[i])
