"""Markdown tables (targets, throughput, ratios, memory) and RESULTS.md from a benchmark JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report_io import cold_results, render_cold, render_remote
from .results import STATS, CaseResult, Run, load_run
from .tables import cps as _cps
from .tables import pct as _pct
from .tables import ratio as _ratio
from .tables import table as _table

__all__ = ["TARGETS", "Target", "main", "render_report", "render_results"]

MiB = 2**20


@dataclass(frozen=True)
class Target:
    label: str
    case: str
    value: Callable[[CaseResult], float | None]
    threshold: float
    percent: bool = False  # show as a percentage rather than a ratio


TARGETS: tuple[Target, ...] = (
    Target(
        "single loop: zarrcrop / zarr-python",
        "photo-v2-960",
        lambda c: c.ratio("zarrcrop", "zarr-python"),
        2.0,
    ),
    Target(
        "single loop: zarrcrop / tensorstore",
        "photo-v2-960",
        lambda c: c.ratio("zarrcrop", "tensorstore"),
        1.5,
    ),
    Target(
        "single loop: zarrcrop / decode bound",
        "photo-v2-960",
        lambda c: c.bound_fraction("zarrcrop"),
        0.85,
        percent=True,
    ),
    Target(
        "random bytes, single loop: zarrcrop / tensorstore",
        "random-v2-960",
        lambda c: c.ratio("zarrcrop", "tensorstore"),
        2.5,
    ),
    Target(
        "random bytes, single loop: zarrcrop / tensorstore",
        "random-v3-960",
        lambda c: c.ratio("zarrcrop", "tensorstore"),
        2.5,
    ),
    Target(
        "read_crops batch / zarrcrop single loop",
        "photo-v2-960",
        lambda c: c.ratio("zarrcrop-batch", "zarrcrop"),
        1.0,
    ),
    Target(
        "read_crops batch / shared decode bound",
        "photo-v2-960",
        lambda c: c.bound_fraction("zarrcrop-batch"),
        0.90,
        percent=True,
    ),
    Target(
        "sharded, single loop: zarrcrop / best of tensorstore and zarrs",
        "photo-v3sharded-960",
        lambda c: _over_best(c, ("tensorstore", "zarrs")),
        1.5,
    ),
    Target(
        "sharded, single loop: zarrcrop / zarr-python",
        "photo-v3sharded-960",
        lambda c: c.ratio("zarrcrop", "zarr-python"),
        2.0,
    ),
)


def _over_best(case: CaseResult, peers: Sequence[str]) -> float | None:
    """zarrcrop's crops/s over the fastest of `peers` measured in this case."""
    ratios = [case.ratio("zarrcrop", peer) for peer in peers]
    measured = [r for r in ratios if r is not None]
    return min(measured) if measured else None


def target_rows(run: Run) -> list[tuple[str, str, str, str, str]]:
    """(target, case, value, required, PASS/FAIL/n/a) for each target."""
    rows = []
    for target in TARGETS:
        result = run.case(target.case)
        value = None if result is None else target.value(result)
        fmt = _pct if target.percent else _ratio
        if value is None:
            status = "n/a (not measured)"
        else:
            status = "PASS" if value >= target.threshold else "FAIL"
        label = target.label
        if result is not None and "batch" in label and result.crops_per_round:
            label = label.replace("batch", f"batch of {result.crops_per_round}")
        rows.append((label, target.case, fmt(value), ">= " + fmt(target.threshold), status))
    return rows


LOADER_TARGETS = (
    ("CropLoader / DataLoader + zarr-python", "croploader", "dataloader-zarr-python", 2.0),
    ("CropLoader / DataLoader + tensorstore", "croploader", "dataloader-tensorstore", 1.5),
    (
        "DataLoader + CropDataset / DataLoader + zarr-python",
        "dataloader-cropdataset",
        "dataloader-zarr-python",
        1.5,
    ),
)


def _extra(run: Run, key: str) -> dict[str, dict[str, Any]]:
    """extra_info of the benchmarks that recorded `key` (loader: pipeline, formats: format)."""
    found: dict[str, dict[str, Any]] = {}
    for bench in run.raw.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if key in info and "crops_per_s" in info:
            found[str(info[key])] = info
    return found


def render_locality(run: Run) -> list[str]:
    """The CropLoader epoch orders (bench/test_loader.py::test_locality), when they ran: crops/s
    warm and cold, how local the batches are and how random the order stays."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for bench in run.raw.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "locality" in info and info.get("crops_per_s"):
            found[(str(info["locality"]), str(info["cache"]))] = info
    if not found:
        return []
    any_info = next(iter(found.values()))
    window = next((i for (o, _), i in found.items() if o == "window"), any_info).get("window")
    size = any_info.get("crop_size")
    lines = [
        "",
        f'### CropLoader epoch orders: shuffle="random" against "window" ({size}x{size} '
        f"photo crops, batches of {any_info.get('batch_size')}, frames per window: {window}, "
        f"{any_info.get('length')} samples)",
        "",
    ]
    rows = [
        (
            order,
            cache,
            _cps(info["crops_per_s"]),
            f"{info['chunks_per_batch']:.1f}",
            f"{info['frames_per_batch']:.2f}",
            f"{info['frame_distance']:.2f}",
        )
        for (order, cache), info in sorted(found.items())
    ]
    header = ("Order", "Page cache", "crops/s", "chunks per batch", "frames per batch",
              "mean frame distance")  # fmt: skip
    lines += _table(header, rows, "llrrrr")
    rate = {key: float(info["crops_per_s"]) for key, info in found.items()}
    ratios = [
        f"{cache} {rate[('window', cache)] / rate[('random', cache)]:.2f}x"
        for cache in ("warm", "cold")
        if ("window", cache) in rate and ("random", cache) in rate
    ]
    if ratios:
        lines += ["", "window / random crops/s: " + ", ".join(ratios) + " (mean frame distance: "
                  "between the frames of consecutive samples of the epoch's order)"]  # fmt: skip
    return lines


def render_extra(run: Run) -> list[str]:
    """Tables for the training-loader and file-format benchmarks, when they ran."""
    lines: list[str] = []
    loaders = _extra(run, "pipeline")
    if loaders:
        any_info = next(iter(loaders.values()))
        lines += [
            "",
            f"### Training loaders ({any_info.get('crop_size')}x{any_info.get('crop_size')} "
            f"photo crops as torch tensors, batches of {any_info.get('batch_size')})",
            "",
        ]
        rows = [
            (name, _cps(info["crops_per_s"]), str(info.get("workers", "-")))
            for name, info in loaders.items()
        ]
        lines += _table(("Pipeline", "crops/s", "worker processes"), rows, "lrr")
        target_rows_ = []
        for label, num, den, need in LOADER_TARGETS:
            if num in loaders and den in loaders:
                value = loaders[num]["crops_per_s"] / loaders[den]["crops_per_s"]
                status = "PASS" if value >= need else "FAIL"
                target_rows_.append((label, _ratio(value), ">= " + _ratio(need), status))
        if target_rows_:
            lines += [
                "",
                *_table(("Target", "Measured", "Required", "Result"), target_rows_, "lrrl"),
            ]
    lines += render_locality(run)
    lines += render_cold(run)
    lines += render_remote(run)
    formats = _extra(run, "format")
    if formats:
        lines += ["", "### Zarr vs PNG / TIFF (the tutorial's comparison, 960x960 crops)", ""]
        zc = formats.get("zarrcrop", {}).get("crops_per_s")
        rows = []
        for name, info in formats.items():
            ratio = "-" if not zc or name == "zarrcrop" else _ratio(zc / info["crops_per_s"])
            size = info.get("bytes_on_disk")
            rows.append(
                (
                    name,
                    _cps(info["crops_per_s"]),
                    "-" if size is None else f"{size / MiB:.1f} MiB",
                    ratio,
                )
            )
        lines += _table(("Format", "crops/s", "on disk", "zarrcrop is"), rows, "lrrr")
    return lines


def render_report(run: Run) -> str:
    """The tables: targets, throughput, ratios, memory (when measured)."""
    lines: list[str] = []
    stat = run.stat
    lines += ["### Targets", ""]
    lines += _table(("Target", "Case", "Measured", "Required", "Result"), target_rows(run), "llrrl")
    lines += [
        "",
        f"### Throughput (crops/s; {stat} round time; batch = one `read_crops` call per round)",
        "",
    ]
    rows = []
    for case_id, c in run.cases.items():
        rows.append(
            (
                case_id,
                _cps(c.cps("zarrcrop")),
                _cps(c.cps("zarrcrop-batch")),
                _cps(c.cps("zarr-python")),
                _cps(c.cps("tensorstore")),
                _cps(c.cps("zarrs")),
                _cps(c.bound("zarrcrop")),
                _cps(c.bound("zarrcrop-batch")),
            )
        )
    lines += _table(
        (
            "Case",
            "zarrcrop",
            "zarrcrop batch",
            "zarr-python",
            "tensorstore",
            "zarrs",
            "decode bound",
            "decode bound (shared)",
        ),
        rows,
        "lrrrrrrr",
    )
    lines += ["", "### Ratios (same run) and fraction of the decode bound", ""]
    rows = []
    for case_id, c in run.cases.items():
        rows.append(
            (
                case_id,
                _ratio(c.ratio("zarrcrop", "zarr-python")),
                _ratio(c.ratio("zarrcrop", "tensorstore")),
                _ratio(c.ratio("zarrcrop", "zarrs")),
                _pct(c.bound_fraction("zarrcrop")),
                _pct(c.mean_bound_fraction("zarrcrop")),
                _ratio(c.ratio("zarrcrop-batch", "zarrcrop")),
                _ratio(c.ratio("zarrcrop-batch", "zarr-python")),
                _pct(c.bound_fraction("zarrcrop-batch")),
                _pct(c.mean_bound_fraction("zarrcrop-batch")),
            )
        )
    lines += _table(
        (
            "Case",
            "zarrcrop / zarr-python",
            "zarrcrop / tensorstore",
            "zarrcrop / zarrs",
            "zarrcrop / bound",
            f"({stat} rounds)",
            "batch / loop",
            "batch / zarr-python",
            "batch / shared bound",
            f"({stat} rounds)",
        ),
        rows,
        "lrrrrrrrrr",
    )
    lines += [
        "",
        "Fractions of the decode bound: the fastest of zarrcrop's reads of each batch against "
        "the fastest of the bound's measurements of it (like with like); in brackets, "
        f"zarrcrop's {stat} round time against the same bound.",
    ]
    memory = run.meta.get("memory")
    if memory:
        lines += ["", "### Memory (zarrcrop single loop, 960x960 photo crops, cache off)", ""]
        lines += _table(("Check", "Measured", "Limit", "Result"), memory_rows(memory), "lrrl")
    lines += render_extra(run)
    return "\n".join(lines) + "\n"


def memory_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    def mib(n: float) -> str:
        return f"{n / MiB:.1f} MiB"

    return [
        (
            f"peak RSS ({m.get('peak_source', 'ru_maxrss')}) over {m['checkpoint']:,} reads, above "
            f"RSS before the loop "
            f"({mib(m['rss_before'])})",
            mib(m["peak_above_before"]),
            f"{mib(m['peak_limit'])} (crop + {m['threads']} chunks + 64 MiB)",
            "PASS" if m["peak_ok"] else "FAIL",
        ),
        *(
            [
                (
                    f"of the RSS at read {m['checkpoint']:,}, above before: anonymous / "
                    f"file-backed (mapped chunk files: page cache, shared; map limit "
                    f"{mib(m.get('map_limit', 0))})",
                    f"{mib(m['RssAnon_growth'])} / {mib(m['RssFile_growth'])}",
                    "(included above)",
                    "",
                )
            ]
            if "RssAnon_growth" in m and "RssFile_growth" in m
            else []
        ),
        (
            f"RSS growth from read {m['checkpoint']:,} to read {m['reads']:,}",
            mib(m["growth"]),
            mib(m["growth_limit"]),
            "PASS" if m["growth_ok"] else "FAIL",
        ),
    ]


def _dl(items: dict[str, Any]) -> list[str]:
    return [f"- {key}: {value}" for key, value in items.items()]


def render_results(run: Run, notes: Sequence[str] = (), suite_seconds: float | None = None) -> str:
    """The whole RESULTS.md: context (command, machine, versions, method), then the tables."""
    meta = run.meta
    settings = meta.get("settings", {})
    machine = dict(meta.get("machine", {}))
    commit = run.raw.get("commit_info", {})
    per_round = settings.get("per_round", "?")
    rounds = settings.get("rounds", "?")
    threads = settings.get("threads", "?")
    lines = [
        "# zarrcrop benchmark results",
        "",
        "Written by `bench/report.py` from one run of the suite in `bench/` (see "
        "[bench/README.md](README.md) for what is measured and how to rerun it). Absolute "
        "crops/s depend on the machine; the figures to compare across machines are the ratios "
        "between readers measured in the same run.",
        "",
        f"- Date: {meta.get('date', run.raw.get('datetime', 'unknown'))}",
        f"- Command: `{meta.get('command', 'unknown')}` (run from the repository root)",
    ]
    if meta.get("pytest_command") and meta.get("pytest_command") != meta.get("command"):
        lines.append(f"- pytest command: `{meta['pytest_command']}`")
    if suite_seconds is not None:
        lines.append(f"- Suite wall time: {suite_seconds / 60:.1f} min (pytest, incl. data check)")
    if commit:
        dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
        lines.append(f"- Commit: {commit.get('id', 'unknown')}{dirty}")
    lines += ["", "## Machine", "", *_dl(machine)]
    lines += ["", "## Versions", "", *_dl(meta.get("versions", {}))]
    lines += [
        "",
        "## Data and method",
        "",
        f"- Data: {settings.get('data_root', 'the data cache')} (built by the suite; "
        "`bench/zcbench/data.py`). `photo`: 4 frames of the tutorial's `gt`, (4, 3, 2160, "
        "3840) uint8, chunks (1, 3, 960, 960), Blosc zstd clevel 5 bitshuffle, tiled from "
        "scikit-image's color photographs. `random`: the same layout filled with random "
        "bytes (incompressible). `flow`: (4, 2, 720, 1280) float16, chunks (1, 2, 360, 640), "
        "same compressor, smooth motion fields plus noise. v2 = zarr v2 (numcodecs Blosc), "
        "v3 = zarr v3 (bytes + blosc codecs). Case `photo-v2-960` = photo content, zarr "
        "v2, 960x960 crops (all channels, one frame).",
        f"- Each benchmark: {rounds} timed rounds (zarrcrop readers: {rounds} x "
        f"{settings.get('decode_reps', '?')}) after 1 warmup round; a round reads "
        f"{per_round} crops at fixed random positions (every reader of a case reads the same "
        "crops; over the timed rounds each reader reads every batch once, the zarrcrop "
        f"readers {settings.get('decode_reps', '?')} times). Loop readers read "
        "`arr[t, :, y:y+s, x:x+s]` one crop at a time; `zarrcrop batch` reads the round with "
        f"one `read_crops(starts, (1, C, s, s), out=buf)` call into a buffer that the warmup "
        "round's `buf = read_crops(starts, (1, C, s, s))` allocated. "
        f"crops/s = crops per round / {run.stat} round time.",
        "- Readers: zarrcrop (`zarrcrop.open`), zarr-python (`zarr.open_array`), tensorstore "
        "(`zarr`/`zarr3` driver, cache pool 0 bytes), zarrs (zarr-python with "
        "`codec_pipeline.path = zarrs.ZarrsCodecPipeline`, frames selected with a length-1 "
        "slice so that zarrs reads natively). "
        f"Threads: {threads} for every reader (zarrcrop pool, zarr `threading.max_workers`, "
        "tensorstore `data_copy_concurrency` and `file_io_concurrency`). Page cache warm; "
        "CPU caches cold at the start of every round (untimed: a read of twice the largest "
        "CPU cache, `zcbench/caches.py`), for every reader and the bound alike.",
        "- Decode bound: `CropArray.decode_seconds` (single-thread CPU seconds to validate and "
        "decompress exactly the Blosc blocks the crops need with zarrcrop's decoder, files "
        "read beforehand and their bytes evicted from the CPU caches (clflush; decoded from "
        "memory, as a read finds them), no stitching; for raw (memcpyed) chunks, the copy "
        "of the needed bytes; minimum of "
        f"{settings.get('decode_reps', '?')} measurements per batch, taken between the timed "
        "rounds: before round i, the batch of round i-1), summed over the "
        f"batches; bound crops/s = crops / (seconds / {threads} threads). The loop is "
        "compared with each crop costed alone (`shared=False`), the batch with chunks shared "
        "inside a batch decoded once (`shared=True`).",
    ]
    lines.append(
        "- Where the time goes (profiles before and after each optimization, what was tried "
        "and dropped): [PROFILE.md](PROFILE.md)."
    )
    if notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    lines += ["", "## Results", "", render_report(run).rstrip("\n")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/report.py",
        description="Tables of crops/s, ratios and decode-bound fractions from a benchmark JSON "
        "written by `python -m pytest bench --benchmark-json=FILE`.",
    )
    parser.add_argument("json", type=Path, help="the --benchmark-json file")
    parser.add_argument("--stat", choices=STATS, default="mean", help="round time (mean)")
    parser.add_argument(
        "--write-results", type=Path, metavar="PATH", help="also write RESULTS.md to PATH"
    )
    parser.add_argument(
        "--note", action="append", default=[], help="a note for RESULTS.md (repeatable)"
    )
    parser.add_argument("--suite-seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    run = load_run(args.json, args.stat)
    remote = any("remote_case" in b.get("extra_info", {}) for b in run.raw.get("benchmarks", []))
    if not run.cases and not run.meta.get("memory") and not cold_results(run) and not remote:
        print(f"{args.json}: no zarrcrop benchmark results in this file", file=sys.stderr)
        return 2
    print(render_report(run), end="")
    if args.write_results:
        args.write_results.write_text(render_results(run, args.note, args.suite_seconds))
        print(f"\nwrote {args.write_results}")
    return 0
