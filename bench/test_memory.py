"""Memory check (an assertion, not a timing): zarrcrop's single-crop loop stays bounded.

In a fresh process (zcbench/memcheck.py), read 960x960 crops of the photo v2 array one at a
time with the decoded-chunk cache off, and check:

- peak RSS over the first 1,000 reads <= RSS before the loop + one output crop + one chunk
  per thread + 64 MiB;
- RSS after all reads (10,000 by default) <= RSS after 1,000 reads + 8 MiB (no growth).

The peak is the process's VmHWM, reset just before the loop: ``ru_maxrss`` cannot be used even
in a fresh subprocess, because on Linux the child inherits the parent's (this pytest process's)
high-water mark through fork/vfork + exec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from zcbench.data import DataCache, dataset_spec
from zcbench.session import MEMORY_KEY, Settings

BENCH_DIR = Path(__file__).resolve().parent
MiB = 2**20
SLACK = 64 * MiB
GROWTH_TOLERANCE = 8 * MiB


def test_memory_bounded(
    bench_data: DataCache, bench_settings: Settings, request: pytest.FixtureRequest
) -> None:
    path = bench_data.array_path(dataset_spec("photo", 2))
    checkpoint = min(bench_settings.memory_checkpoint, bench_settings.memory_reads)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zcbench.memcheck",
            os.fspath(path),
            "--size",
            "960",
            "--reads",
            str(bench_settings.memory_reads),
            "--checkpoint",
            str(checkpoint),
            "--threads",
            str(bench_settings.threads),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"memcheck failed:\n{proc.stdout}\n{proc.stderr}"
    m = json.loads(proc.stdout.strip().splitlines()[-1])

    peak_limit = m["out_bytes"] + m["chunk_bytes"] * m["threads"] + SLACK
    peak_above = m["peak_at_checkpoint"] - m["rss_before"]
    growth = m["rss_end"] - m["rss_at_checkpoint"]
    m.update(
        peak_above_before=peak_above,
        peak_limit=peak_limit,
        growth=growth,
        growth_limit=GROWTH_TOLERANCE,
        peak_ok=peak_above <= peak_limit,
        growth_ok=growth <= GROWTH_TOLERANCE,
    )
    request.config.stash[MEMORY_KEY] = m

    assert peak_above <= peak_limit, (
        f"peak RSS over {checkpoint} reads is {peak_above / MiB:.1f} MiB above the RSS before "
        f"the loop; limit {peak_limit / MiB:.1f} MiB"
    )
    assert growth <= GROWTH_TOLERANCE, (
        f"RSS grew by {growth / MiB:.1f} MiB between read {checkpoint} and read "
        f"{m['reads']} (tolerance {GROWTH_TOLERANCE / MiB:.0f} MiB)"
    )
