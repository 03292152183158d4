"""Resuming training after SIGKILL, with real processes: a training loop that checkpoints its
loader state (atomically: a temporary file renamed over the last checkpoint) after every step
is killed at random steps and restarted from its checkpoint, for CropLoader and for torchdata's
StatefulDataLoader with 2 workers; the batches of the interrupted runs, concatenated, equal
those of one uninterrupted run, bit for bit. Also examples/train_sr.py --resume.

The training loop is this file run as a script (``python test_torch_resume.py ...``)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2
BATCH = 4
LENGTH = 45  # 12 batches per epoch, the last one short
STEPS = EPOCHS * 12
TIMEOUT_S = 180  # for one run of the training loop


# -- the training loop (run as a script) -----------------------------------------------------


def _dataset(path: Path) -> Any:
    import zarrcrop
    from zarrcrop.torch import CropDataset

    group = zarrcrop.open_group(path)
    return CropDataset(
        {"hr": group["hr"], "lr": group["lr"]}, crop=8, frames=2, length=LENGTH, flips=True, seed=3
    )


def _digest(batch: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(batch):
        tensor = batch[name].contiguous()
        h.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def _save_atomically(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def train(argv: list[str]) -> None:
    """Train (record every batch's digest) from the checkpoint if there is one; save the
    checkpoint after every step, and the digests of the whole run at the end."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--loader", choices=["croploader", "stateful"], required=True)
    parser.add_argument("--shuffle", default="random")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)

    from zarrcrop.torch import CropLoader, CropSampler

    dataset = _dataset(args.data)
    checkpoint = json.loads(args.checkpoint.read_text()) if args.checkpoint.exists() else None
    digests: list[str] = checkpoint["digests"] if checkpoint else []
    if args.loader == "croploader":
        loader = CropLoader(dataset, BATCH, shuffle=args.shuffle, drop_last=False)
        if checkpoint:
            loader.load_state_dict(checkpoint["loader"])
        first_epoch = loader.epoch
        source, set_epoch, state = loader, loader.set_epoch, loader.state_dict
    else:
        from torchdata.stateful_dataloader import StatefulDataLoader

        sampler = CropSampler(dataset, BATCH, shuffle=args.shuffle, drop_last=False)
        dl = StatefulDataLoader(
            dataset, batch_sampler=sampler, num_workers=2, persistent_workers=True, timeout=120
        )
        first_epoch = 0
        if checkpoint:
            dl.load_state_dict(checkpoint["loader"])
            first_epoch = checkpoint["epoch"]
        source, set_epoch, state = dl, sampler.set_epoch, dl.state_dict
    for epoch in range(first_epoch, EPOCHS):
        set_epoch(epoch)
        for batch in source:
            digests.append(_digest(batch))
            time.sleep(args.delay)  # the training step
            _save_atomically(
                args.checkpoint, {"epoch": epoch, "loader": state(), "digests": digests}
            )
    _save_atomically(args.out, {"digests": digests})


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path) -> Path:
    """hr (6, 3, 32, 48) uint8 chunks (1, 3, 16, 16) and lr = hr[..., ::2, ::2]."""
    import numcodecs
    import zarr

    path = tmp_path / "tiny.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    hr = np.random.default_rng(5).integers(0, 256, size=(6, 3, 32, 48), dtype=np.uint8)
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


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    # A session of its own, so that the workers of a killed loop can be stopped with it.
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, __file__, *args], stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process (by PID) unless it has exited, then what is left of its session
    (the DataLoader workers of a killed loop)."""
    proc.send_signal(signal.SIGKILL)  # nothing once it has been waited for
    proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run(args: list[str], log: Path) -> None:
    proc = _start(args, log)
    try:
        proc.wait(timeout=TIMEOUT_S)
    finally:
        _kill(proc)
    assert proc.returncode == 0, log.read_text()


def _steps_saved(checkpoint: Path) -> int:
    try:
        return len(json.loads(checkpoint.read_text())["digests"])
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize(
    ("loader", "shuffle"),
    [("croploader", "random"), ("croploader", "window"), ("stateful", "random")],
)
def test_killed_training_resumes_with_the_same_batches(tmp_path, data, loader, shuffle):
    pytest.importorskip("torch")
    if loader == "stateful":
        pytest.importorskip("torchdata.stateful_dataloader")
    log = tmp_path / "train.log"
    common = ["--data", str(data), "--loader", loader, "--shuffle", shuffle]
    reference = tmp_path / "reference.json"
    _run([*common, "--checkpoint", str(tmp_path / "ref-ckpt.json"), "--out", str(reference)], log)
    expected = json.loads(reference.read_text())["digests"]
    assert len(expected) == STEPS and len(set(expected)) == STEPS

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    checkpoint, out = tmp_path / "ckpt.json", tmp_path / "out.json"
    args = [*common, "--checkpoint", str(checkpoint), "--out", str(out)]
    kills: list[int] = []
    while len(kills) < 2 and _steps_saved(checkpoint) < STEPS - 6:
        target = rng.randint(_steps_saved(checkpoint) + 1, STEPS - 5)
        proc = _start([*args, "--delay", "0.05"], log)
        deadline = time.monotonic() + TIMEOUT_S
        try:
            while _steps_saved(checkpoint) < target and proc.poll() is None:
                assert time.monotonic() < deadline, f"no progress (seed {seed})"
                time.sleep(0.005)
        finally:
            _kill(proc)
        assert proc.returncode == -signal.SIGKILL, (seed, log.read_text())
        assert not out.exists()
        kills.append(_steps_saved(checkpoint))
    assert kills, seed
    _run(args, log)
    got = json.loads(out.read_text())["digests"]
    assert got == expected, f"killed after steps {kills} (seed {seed})"


def test_example_train_sr_resume(tmp_path):
    pytest.importorskip("torch")
    script = REPO / "examples" / "train_sr.py"
    common = [sys.executable, str(script), "--batch-size", "2", "--frames", "2", "--threads", "1"]
    ckpt = ["--checkpoint", str(tmp_path / "sr.pt"), "--resume", "--save-every", "2"]

    def run(*args: str) -> list[str]:
        result = subprocess.run(
            [*common, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return [line for line in result.stdout.splitlines() if " loss " in line]

    uninterrupted = run("--steps", "11")
    first = run("--steps", "5", *ckpt)  # crosses no epoch end (8 batches per epoch)
    second = run("--steps", "11", *ckpt)  # resumes at step 6, through the end of epoch 0
    assert len(uninterrupted) == 11 and first + second == uninterrupted
    assert not (tmp_path / "sr.pt.tmp").exists()


if __name__ == "__main__":
    train(sys.argv[1:])
