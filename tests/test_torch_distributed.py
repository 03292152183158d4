"""Rank-elastic resuming with a real torch.distributed process group (gloo, on 127.0.0.1):
2 ranks read part of an epoch with CropLoader and save the loader state, 3 ranks resume from
it (and 3 -> 2); an all_gather shows that across all ranks and both runs every sample of the
epoch was seen exactly once, plus the padding of the last step only, and that every rank's
state is the same. Each batch is checked against the dataset's samples.

The ranks are this file run as a script (``python test_torch_distributed.py ...``), started
by the test, each waited for with a timeout and stopped by its PID."""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

LENGTH = 51
BATCH = 4
EPOCH = 2
SAVE_AFTER = 2  # batches per rank before the state is saved
TIMEOUT_S = 240  # for one group of processes


# -- one rank (run as a script) ----------------------------------------------------------------


def rank_main(argv: list[str]) -> None:
    """Read the epoch (from the saved state when resuming), check every batch, gather."""
    parser = argparse.ArgumentParser()
    for name in ("--rank", "--world", "--port"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--shuffle", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as dist
    import zarrcrop
    from torch.utils.data import default_collate
    from zarrcrop.torch import CropDataset, CropLoader

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{args.port}",
        rank=args.rank,
        world_size=args.world,
        timeout=timedelta(seconds=120),
    )
    group = zarrcrop.open_group(args.data)
    ds = CropDataset({"hr": group["hr"], "lr": group["lr"]}, crop=8, length=LENGTH, flips=True)
    loader = CropLoader(
        ds, BATCH, shuffle=args.shuffle, drop_last=False, epoch=EPOCH, rank=args.rank,
        world_size=args.world, num_threads=1,
    )  # fmt: skip
    before: list[list[int]] = []
    if args.resume is not None:
        saved = json.loads(args.resume.read_text())
        loader.load_state_dict(saved["state"])
        before = saved["seen"]
    loader.set_epoch(EPOCH)  # keeps the restored position
    planned = loader.batches(position=loader.position)
    ds.set_epoch(loader.epoch)
    seen: list[int] = []
    for b, batch in enumerate(loader):
        expected = default_collate([ds[int(i)] for i in planned[b]])
        assert all(torch.equal(batch[k], expected[k]) for k in expected), b
        seen += planned[b].tolist()
        if args.resume is None and b + 1 == SAVE_AFTER:
            break
    state = loader.state_dict()
    gathered: list[Any] = [None] * args.world
    dist.all_gather_object(gathered, {"state": state, "seen": seen})
    if args.rank == 0:
        assert all(g["state"] == state for g in gathered), "the ranks' states differ"
        result = {"state": state, "seen": before + [g["seen"] for g in gathered]}
        if args.resume is not None:  # the epoch is over: every sample once, plus padding
            counts = Counter(i for share in result["seen"] for i in share)
            assert set(counts) == set(range(LENGTH)), "a sample was skipped"
            assert counts.total() - LENGTH < args.world, "a sample was repeated"
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, args.out)
    dist.barrier()
    dist.destroy_process_group()


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path) -> Path:
    import numcodecs
    import zarr

    path = tmp_path / "tiny.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    hr = np.random.default_rng(11).integers(0, 256, size=(6, 3, 32, 48), dtype=np.uint8)
    for name, values, chunks in (
        ("hr", hr, (1, 3, 16, 16)),
        ("lr", np.ascontiguousarray(hr[..., ::2, ::2]), (1, 3, 8, 8)),
    ):
        arr = group.create_array(
            name, shape=values.shape, chunks=chunks, dtype="uint8",
            compressors=numcodecs.Blosc(cname="lz4", clevel=1),
        )  # fmt: skip
        arr[...] = values
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_group(world: int, args: list[str], logs: Path) -> None:
    """Run ranks 0..world-1 to completion; on a failure or the timeout, stop every rank still
    running by its PID."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's pairs on the loopback, like the rendezvous
    port = _free_port()
    procs = []
    try:
        for rank in range(world):
            with open(logs / f"rank{rank}-of-{world}.log", "wb") as log:
                command = [sys.executable, __file__, "--rank", str(rank), "--world", str(world)]
                command += ["--port", str(port), *args]
                procs.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                )
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one rank failed: the others would wait for it until their timeout
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    failed = {rank: p.returncode for rank, p in enumerate(procs) if p.returncode != 0}
    if failed:
        output = "\n".join(
            f"--- rank {r}:\n" + (logs / f"rank{r}-of-{world}.log").read_text() for r in failed
        )
        pytest.fail(f"ranks {failed} of {world} failed (negative: killed at the timeout)\n{output}")


@pytest.mark.parametrize(("before", "after", "shuffle"), [(2, 3, "random"), (3, 2, "window")])
def test_save_on_some_ranks_resume_on_another_number(tmp_path, data, before, after, shuffle):
    pytest.importorskip("torch")
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    common = ["--data", str(data), "--shuffle", shuffle]
    saved, final = tmp_path / "saved.json", tmp_path / "final.json"
    _run_group(before, [*common, "--out", str(saved)], tmp_path)
    state = json.loads(saved.read_text())
    position = SAVE_AFTER * before * BATCH
    assert state["state"]["position"] == position and state["state"]["world_size"] == before
    assert len(state["seen"]) == before and all(len(s) == SAVE_AFTER * BATCH for s in state["seen"])

    _run_group(after, [*common, "--out", str(final), "--resume", str(saved)], tmp_path)
    result = json.loads(final.read_text())
    assert result["state"]["position"] == LENGTH and result["state"]["world_size"] == after
    counts = Counter(i for share in result["seen"] for i in share)
    tail = (LENGTH - position) % (after * BATCH)
    padding = after * math.ceil(tail / after) - tail
    assert set(counts) == set(range(LENGTH))
    assert counts.total() == LENGTH + padding and 0 < padding < after
    # Before the save, and after it, nothing repeats; the padding repeats the resumed part.
    first = [i for share in result["seen"][:before] for i in share]
    assert len(set(first)) == len(first) == position


if __name__ == "__main__":
    rank_main(sys.argv[1:])
