"""DataLoader workers reading a remote array: ``run_loader_workers(url, options)`` runs this
file as a script in a process of its own, which opens the group at ``url`` natively, reads in
the parent, then sums the same crops through a torch DataLoader with 2 fork workers and with 2
spawn workers, printing ``fork TOTAL`` and ``spawn TOTAL`` (``expected_total(data)`` each).
The S3 and GCS tests use it: workers must read after the parent has read."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from typing import Any

N_ITEMS = 8


def _item(a: Any, i: int) -> Any:
    return a[i % 3, :64, :64].astype("int64").sum()


def expected_total(data: Any) -> int:
    """What each printed TOTAL must be for the array's data."""
    return sum(int(_item(data, i)) for i in range(N_ITEMS))


def run_loader_workers(url: str, options: dict[str, Any], timeout: float = 300) -> str:
    """The script's output; fails the test (AssertionError with its stderr) if it fails."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), url, repr(options)],
        capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(__file__),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class CropSums:
    """A map-style dataset (what DataLoader needs: ``__len__``, ``__getitem__``; picklable
    for spawn workers, so at module level)."""

    def __init__(self, a: Any) -> None:
        self.a = a

    def __len__(self) -> int:
        return N_ITEMS

    def __getitem__(self, i: int) -> Any:
        return _item(self.a, i)


def _main() -> None:
    import torch.utils.data as tud
    import zarrcrop

    url, opts = sys.argv[1], ast.literal_eval(sys.argv[2])
    a = zarrcrop.open_group(url, storage_options=opts, strict=True)["a"]
    a[0, :50, :50].copy()  # the parent reads first
    for ctx in ("fork", "spawn"):
        dl = tud.DataLoader(
            CropSums(a), batch_size=2, num_workers=2, multiprocessing_context=ctx, timeout=60
        )
        print(ctx, sum(int(b.sum()) for b in dl), flush=True)


if __name__ == "__main__":
    _main()
