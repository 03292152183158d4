"""The I/O sections of the report: cold page cache (bench/test_cold.py) and object stores
(bench/test_remote.py), each with its targets and the bounds measured in the same run."""

from __future__ import annotations

from typing import Any

from .results import Run
from .tables import cps as _cps
from .tables import pct as _pct
from .tables import ratio as _ratio
from .tables import table as _table
from .tables import target_row

__all__ = [
    "cold_results",
    "cold_target_rows",
    "remote_target_rows",
    "render_cold",
    "render_remote",
]


COLD_READERS = (
    "zarrcrop",
    "zarrcrop-prefetch",
    "zarrcrop-batch",
    "zarrcrop-loader",
    "zarr-python",
    "tensorstore",
    "disk-16-per-crop",
    "disk-16",
    "disk-1",
)
# Each zarrcrop mode and the device's bound for its access pattern (None: measured by the
# benchmark itself, "disk_bound_crops_per_s").
COLD_BOUNDS = (
    ("zarrcrop", "disk-16-per-crop"),
    ("zarrcrop-prefetch", "disk-16-per-crop"),
    ("zarrcrop-batch", "disk-16"),
    ("zarrcrop-loader", None),
)
#: Cold targets of issue 15 (case photo-v2-960): (label, reader, kind, threshold); kind
#: "tensorstore" is the ratio to tensorstore, "bound" the fraction of the lower of the device's
#: and the decode bound.
COLD_TARGETS = (
    ("cold single loop: zarrcrop / tensorstore", "zarrcrop", "tensorstore", 2.5),
    ("cold single loop: zarrcrop / lower of I/O and decode bound", "zarrcrop", "bound", 0.60),
    ("cold read_crops batch: zarrcrop / lower of I/O and decode bound", "zarrcrop-batch",
     "bound", 0.85),
    ("cold CropLoader (prefetch on): zarrcrop / lower of I/O and decode bound",
     "zarrcrop-loader", "bound", 0.85),
)  # fmt: skip
COLD_TARGET_CASE = "photo-v2-960"


def cold_results(run: Run) -> dict[str, dict[str, dict[str, Any]]]:
    """case -> reader -> extra_info of bench/test_cold.py's benchmarks."""
    cases: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in run.raw.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "cold_case" in info and info.get("crops_per_s"):
            cases.setdefault(str(info["cold_case"]), {})[str(info["cold_reader"])] = info
    return cases


def _cold_bounds(
    readers: dict[str, dict[str, Any]], reader: str, disk: str | None
) -> tuple[float | None, float | None, float | None]:
    """(device bound, decode bound, the lower) of a zarrcrop reader, crops/s."""
    info = readers.get(reader, {})
    if disk is None:
        io = info.get("disk_bound_crops_per_s")
    else:
        io = readers.get(disk, {}).get("crops_per_s")
    dec = info.get("decode_bound_crops_per_s")
    known = [float(v) for v in (io, dec) if v]
    return (
        float(io) if io else None,
        float(dec) if dec else None,
        min(known) if known else None,
    )


def cold_target_rows(run: Run) -> list[tuple[str, str, str, str, str]]:
    """(target, case, value, required, PASS/FAIL/n/a) for each cold target."""
    readers = cold_results(run).get(COLD_TARGET_CASE, {})
    bounds = dict(COLD_BOUNDS)
    rows = []
    for label, reader, kind, threshold in COLD_TARGETS:
        rate = readers.get(reader, {}).get("crops_per_s")
        value: float | None = None
        if rate and kind == "tensorstore":
            peer = readers.get("tensorstore", {}).get("crops_per_s")
            value = float(rate) / float(peer) if peer else None
        elif rate:
            lower = _cold_bounds(readers, reader, bounds[reader])[2]
            value = float(rate) / lower if lower else None
        rows.append(target_row(label, COLD_TARGET_CASE, value, threshold, kind == "tensorstore"))
    return rows


def render_cold(run: Run) -> list[str]:
    """The cold page cache tables (bench/test_cold.py), when it ran: crops/s per case and
    reader; each zarrcrop mode against the device's bound for its access pattern and its
    decode bound, measured in the same run; the cold targets."""
    cases = cold_results(run)
    if not cases:
        return []
    rows = []
    for case, readers in cases.items():
        rows.append((case, *(_cps(readers.get(r, {}).get("crops_per_s")) for r in COLD_READERS)))
    bound_rows = []
    for case, readers in cases.items():
        for reader, disk in COLD_BOUNDS:
            rate = readers.get(reader, {}).get("crops_per_s")
            if not rate:
                continue
            io, dec, lower = _cold_bounds(readers, reader, disk)
            fraction = _pct(rate / lower if lower else None)
            bound_rows.append((case, reader, _cps(rate), _cps(io), _cps(dec), fraction))
    return [
        "",
        "### Cold page cache (every file evicted before every round; crops/s)",
        "",
        *_table(("Case", *COLD_READERS), rows, "l" + "r" * len(COLD_READERS)),
        "",
        "Cold reads against their bounds, same run (I/O bound: the chunk files read whole with"
        " 16 threads, `disk-16-per-crop` for loops, `disk-16` for a batch, the loader's own"
        " rounds for the loader; decode bound: single-thread decode seconds / threads, chunks"
        " shared within a batch for batch and loader):",
        "",
        *_table(
            ("Case", "Reader", "crops/s", "I/O bound", "decode bound", "of the lower"),
            bound_rows,
            "llrrrr",
        ),
        "",
        "### Cold targets",
        "",
        *_table(
            ("Target", "Case", "Measured", "Required", "Result"), cold_target_rows(run), "llrrl"
        ),
    ]


REMOTE_READERS = (
    "zarrcrop",
    "zarrcrop-batch",
    "zarrcrop-loader",
    "zarr-python-s3fs",
    "zarr-python-s3fs-batch",
    "zarr-python-obstore",
    "zarr-python-obstore-batch",
    "tensorstore",
    "tensorstore-batch",
)


#: Object-store targets of issue 17 at 20 ms RTT: (label, case, reader, kind, threshold);
#: kind "tensorstore" is the ratio to tensorstore's reader of the same mode, "bound" the
#: fraction of the lowest of the transfer, latency and decode bounds.
REMOTE_TARGETS = (
    ("single loop: zarrcrop / tensorstore", "photo-v2-960", "zarrcrop", "tensorstore", 1.25),
    ("single loop: zarrcrop / tensorstore", "photo-v3sharded-960", "zarrcrop", "tensorstore",
     1.5),
    ("read_crops batch: zarrcrop / tensorstore ts.Batch", "photo-v2-960", "zarrcrop-batch",
     "tensorstore", 1.5),
    ("read_crops batch: zarrcrop / tensorstore ts.Batch", "photo-v3sharded-960",
     "zarrcrop-batch", "tensorstore", 1.5),
    ("CropLoader with prefetch: zarrcrop / lowest bound", "photo-v2-960", "zarrcrop-loader",
     "bound", 0.85),
    ("CropLoader with prefetch: zarrcrop / lowest bound", "photo-v3sharded-960",
     "zarrcrop-loader", "bound", 0.85),
)  # fmt: skip
REMOTE_TARGET_RTT_MS = 20.0


def remote_target_rows(run: Run) -> list[tuple[str, str, str, str, str]]:
    """(target, case, value, required, PASS/FAIL/n/a) for each object-store target."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in run.raw.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if info.get("crops_per_s") and info.get("rtt_ms") == REMOTE_TARGET_RTT_MS:
            rows.setdefault(str(info["remote_case"]), {})[str(info["remote_reader"])] = info
    out = []
    for label, case, reader, kind, threshold in REMOTE_TARGETS:
        readers = rows.get(case, {})
        info = readers.get(reader, {})
        rate = info.get("crops_per_s")
        value: float | None = None
        if rate and kind == "tensorstore":
            peer_name = "tensorstore-batch" if reader != "zarrcrop" else "tensorstore"
            peer = readers.get(peer_name, {}).get("crops_per_s")
            value = float(rate) / float(peer) if peer else None
        elif rate:
            bounds = [
                float(b) for b in (
                    info.get("transfer_bound_crops_per_s"),
                    info.get("latency_bound_crops_per_s"),
                    info.get("decode_bound_crops_per_s"),
                ) if b
            ]  # fmt: skip
            value = float(rate) / min(bounds) if bounds else None
        out.append(target_row(label, case, value, threshold, kind == "tensorstore"))
    return out


def render_remote(run: Run) -> list[str]:
    """The object-store tables (bench/test_remote.py), when it ran: crops/s per case, RTT and
    reader; zarrcrop's requests, bytes and bounds; zarrcrop against the best peer."""
    rows: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}
    for bench in run.raw.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "remote_case" in info and info.get("crops_per_s"):
            key = (str(info["remote_case"]), float(info["rtt_ms"]))
            rows.setdefault(key, {})[str(info["remote_reader"])] = info
    if not rows:
        return []
    speed = []
    detail = []
    for (case, rtt), readers in sorted(rows.items()):
        speed.append((case, f"{rtt:g}", *(_cps(readers.get(r, {}).get("crops_per_s"))
                                          for r in REMOTE_READERS)))  # fmt: skip
        for mode in ("zarrcrop", "zarrcrop-batch", "zarrcrop-loader"):
            info = readers.get(mode)
            if not info:
                continue
            peers = [
                v["crops_per_s"] for k, v in readers.items()
                if not k.startswith("zarrcrop") and k.endswith("-batch") == (mode != "zarrcrop")
            ]  # fmt: skip
            best = max(peers) if peers else None
            detail.append((
                case, f"{rtt:g}", mode, _cps(info["crops_per_s"]),
                f"{info['requests_per_round']:.0f}", f"{info['heads_per_round']:.0f}",
                str(info["max_in_flight"]), f"{info['mb_per_round']:.1f}",
                _cps(info.get("transfer_bound_crops_per_s")),
                _cps(info.get("latency_bound_crops_per_s")),
                _cps(info.get("decode_bound_crops_per_s")),
                _ratio(info["crops_per_s"] / best if best else None),
            ))  # fmt: skip
    rate = next(iter(next(iter(rows.values())).values())).get("proxy_mb_per_s")
    header = ("Target", "Case", "Measured", "Required", "Result")
    return [
        "",
        "### Object store targets (20 ms RTT)",
        "",
        *_table(header, remote_target_rows(run), "llrrl"),
        "",
        "### Object store (S3 on loopback behind a latency proxy; crops/s)",
        "",
        *_table(("Case", "RTT ms", *REMOTE_READERS), speed, "ll" + "r" * len(REMOTE_READERS)),
        "",
        "zarrcrop per round of 16 crops (requests, HEADs, most in flight and MB counted at the "
        f"proxy, whose own throughput was {rate:.0f} MB/s in this run) and its bounds: transfer "
        "(the round's bytes at the proxy's rate), latency (one round trip per crop for a loop, "
        "per batch for the loader), "
        "decode (single-thread decode seconds / threads):",
        "",
        *_table(
            (
                "Case",
                "RTT ms",
                "Reader",
                "crops/s",
                "requests",
                "HEADs",
                "in flight",
                "MB",
                "transfer bound",
                "latency bound",
                "decode bound",
                "/ best peer",
            ),
            detail,
            "lll" + "r" * 9,
        ),
    ]
