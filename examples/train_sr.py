"""Train a tiny 2x super-resolution model on CPU from a multi-resolution Zarr dataset.

Creates a small dataset with zarr-python in a temporary directory (removed afterwards):
``gt`` of shape (T, 3, 256, 384) uint8, chunks (1, 3, 128, 128), Blosc zstd + bitshuffle (the
tutorial's layout, scaled down), and ``lr``, its exact 2x area downscale (T, 3, 128, 192).
Then trains a few steps on aligned (hr 96x96, lr 48x48) crop pairs read by
``zarrcrop.torch.CropLoader`` and prints the loss and crops/s.

    python examples/train_sr.py --steps 20 --batch-size 8

With ``--checkpoint PATH`` it saves the model, the optimizer and the loader's state (where
the epoch stands) in one file every ``--save-every`` steps and at the end, atomically (written
to a temporary file, then renamed over the last one). ``--resume`` continues from that file
when it exists, with exactly the batches the uninterrupted run would have read: run the same
command again after a preemption.

    python examples/train_sr.py --steps 20 --checkpoint sr.pt
    python examples/train_sr.py --steps 40 --checkpoint sr.pt --resume
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numcodecs  # type: ignore[import-untyped]
import numpy as np
import torch
import torch.nn.functional as F
import zarr
import zarrcrop
from torch import nn
from zarrcrop.torch import CropDataset, CropLoader


def smooth_frames(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """(frames, 3, height, width) uint8 images with structure at several scales."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(
        np.linspace(0.0, 1.0, height, dtype=np.float32),
        np.linspace(0.0, 1.0, width, dtype=np.float32),
        indexing="ij",
    )
    out = np.empty((frames, 3, height, width), dtype=np.uint8)
    for t in range(frames):
        for c in range(3):
            field = np.zeros((height, width), dtype=np.float32)
            for _ in range(8):
                fy, fx = rng.uniform(0.5, 24.0, size=2)
                phase = rng.uniform(0, 2 * np.pi)
                field += np.sin(2 * np.pi * (fy * yy + fx * xx) + phase) / (1 + 0.1 * (fy + fx))
            field = (field - field.min()) / (np.ptp(field) + 1e-6)
            out[t, c] = np.clip(field * 255 + rng.normal(0, 2, field.shape), 0, 255).astype(
                np.uint8
            )
    return out


def create_dataset(path: Path, frames: int, seed: int) -> None:
    """Write ``gt`` and its exact 2x area downscale ``lr`` into a zarr v2 group at ``path``."""
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    gt = smooth_frames(frames, 256, 384, seed)
    lr = gt.reshape(frames, 3, 128, 2, 192, 2).astype(np.uint16).sum(axis=(3, 5))
    lr = ((lr + 2) // 4).astype(np.uint8)  # the mean of each 2x2 block, rounded
    for name, data, chunks in (("gt", gt, (1, 3, 128, 128)), ("lr", lr, (1, 3, 64, 64))):
        array = group.create_array(
            name, shape=data.shape, chunks=chunks, dtype="uint8", compressors=compressor
        )
        array[...] = data


class TinySR(nn.Module):
    """A few convolutions and a PixelShuffle on top of a bilinear upsampling."""

    def __init__(self, channels: int = 32, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 3 * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(lr, scale_factor=self.scale, mode="bilinear", align_corners=False)
        out: torch.Tensor = base + self.body(lr)
        return out


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file renamed over ``path``: a crash mid-save (or a
    preemption) leaves the previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per batch (default 8)")
    parser.add_argument("--crop", type=int, default=96, help="hr crop size (default 96)")
    parser.add_argument("--frames", type=int, default=8, help="frames in the dataset (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="zarrcrop/torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="save model, optimizer and loader here"
    )
    parser.add_argument(
        "--save-every", type=int, default=10, help="steps between checkpoints (default 10)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from --checkpoint when it exists"
    )
    args = parser.parse_args(argv)
    if args.resume and args.checkpoint is None:
        parser.error("--resume needs --checkpoint PATH")
    if args.threads:
        torch.set_num_threads(args.threads)
        zarrcrop.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory(prefix="zarrcrop-sr-") as tmp:
        path = Path(tmp) / "sr.zarr"
        create_dataset(path, args.frames, args.seed)
        group = zarr.open_group(str(path), mode="r")
        gt, lr = group["gt"], group["lr"]
        assert isinstance(gt, zarr.Array) and isinstance(lr, zarr.Array)
        # zarr.Arrays are opened with zarrcrop by the dataset; CropArrays work as well.
        dataset = CropDataset({"hr": gt, "lr": lr}, crop=args.crop, seed=args.seed, flips=True)
        loader = CropLoader(dataset, args.batch_size, prefetch=2)
        print(f"dataset: {dataset}")
        print(f"{len(loader)} batches per epoch of {args.batch_size} crops")

        model = TinySR()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        step = 0
        if args.resume and args.checkpoint.exists():
            checkpoint = torch.load(args.checkpoint, weights_only=True)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            loader.load_state_dict(checkpoint["loader"])  # the next batch follows the saved one
            step = int(checkpoint["step"])
            print(f"resumed from {args.checkpoint}: step {step}, epoch {loader.epoch}")
        first_step = step
        epoch = loader.epoch

        def save() -> None:
            """The model, the optimizer and where the loader stands, in one file."""
            if args.checkpoint is None:
                return
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "loader": loader.state_dict(),  # a small dict: epoch, position, ...
                "step": step,
            }
            save_checkpoint(args.checkpoint, checkpoint)

        waited = 0.0
        start = time.perf_counter()
        while step < args.steps:
            loader.set_epoch(epoch)  # keeps the position of a resumed epoch
            batches = iter(loader)
            while step < args.steps:
                t0 = time.perf_counter()
                try:
                    batch = next(batches)
                    assert isinstance(batch, dict)
                except StopIteration:
                    break
                waited += time.perf_counter() - t0
                hr_batch = batch["hr"].float().div_(255.0)
                lr_batch = batch["lr"].float().div_(255.0)
                loss = F.l1_loss(model(lr_batch), hr_batch)
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                step += 1
                print(f"epoch {epoch} step {step:4d}  loss {loss.item():.4f}")
                if step % args.save_every == 0:
                    save()
            epoch += 1
        save()
        elapsed = time.perf_counter() - start
        crops = (step - first_step) * args.batch_size
        print(
            f"{crops} crop pairs in {elapsed:.2f} s: {crops / elapsed:.1f} crops/s trained; "
            f"{waited:.3f} s waiting for data ({waited / elapsed:.1%} of the time)"
        )


if __name__ == "__main__":
    main()
