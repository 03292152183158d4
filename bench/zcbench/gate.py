"""Regression gate: zarrcrop / zarr-python crops/s ratios of a run against baselines.json.

A case regresses when its ratio is more than ``tolerance`` (10%) below its baseline. Ratios,
not absolute crops/s, are gated: both readers run in the same session on the same machine,
so the ratio carries over between machines far better than the throughput does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import ab_judge
from .results import STATS, Run, gate_ratios, load_run

__all__ = [
    "DEFAULT_BASELINES",
    "DEFAULT_TOLERANCE",
    "compare",
    "main",
    "regressed_cases",
    "write_baselines",
]

DEFAULT_BASELINES = Path(__file__).resolve().parent.parent / "baselines.json"
DEFAULT_TOLERANCE = 0.10

EXIT_REGRESSION = 1
EXIT_NO_DATA = 2


def _load_baselines(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"baselines": {}}
    data = json.loads(path.read_text())
    if not isinstance(data.get("baselines"), dict):
        raise ValueError(f"{path}: no 'baselines' object")
    return dict(data)


def compare(
    current: dict[str, float], baselines: dict[str, float], tolerance: float
) -> list[tuple[str, float | None, float | None, str]]:
    """(key, baseline, current, status) with status ok / REGRESSION / new / not run."""
    rows: list[tuple[str, float | None, float | None, str]] = []
    for key in [*baselines, *(k for k in current if k not in baselines)]:
        base, now = baselines.get(key), current.get(key)
        if now is None:
            status = "not run"
        elif base is None:
            status = "new (no baseline)"
        elif now < base * (1.0 - tolerance):
            status = "REGRESSION"
        else:
            status = "ok"
        rows.append((key, base, now, status))
    return rows


def regressed_cases(
    json_path: Path, baselines_path: Path = DEFAULT_BASELINES, tolerance: float | None = None
) -> list[str]:
    """The gate keys (``<case>/loop``, ``<case>/batch``) of ``json_path`` that regress."""
    data = _load_baselines(baselines_path)
    tol = float(tolerance if tolerance is not None else data.get("tolerance", DEFAULT_TOLERANCE))
    current = gate_ratios(load_run(json_path, str(data.get("stat", "mean"))))
    rows = compare(current, data.get("baselines", {}), tol)
    return [key for key, _, _, status in rows if status == "REGRESSION"]


def lowest_ratios(runs: Sequence[Run]) -> dict[str, float]:
    """Per gate key, the lowest ratio of the runs that measured it: one run's high point
    (the ratios of one case move by about 10% between runs on a noisy machine) is not the bar."""
    lowest: dict[str, float] = {}
    for run in runs:
        for key, value in gate_ratios(run).items():
            lowest[key] = min(lowest.get(key, value), value)
    return lowest


def write_baselines(
    path: Path, runs: Sequence[Run], current: dict[str, float], tolerance: float, stat: str
) -> dict[str, float]:
    """Replace the baselines of the cases in ``runs`` (``current``: their lowest ratios); keep
    those of cases they did not run."""
    data = _load_baselines(path)
    merged = dict(data.get("baselines", {}))
    merged.update({key: round(value, 3) for key, value in current.items()})

    def source(run: Run) -> dict[str, Any]:
        meta = run.meta
        return {
            "date": meta.get("date"),
            "command": meta.get("command"),
            "cpu": meta.get("machine", {}).get("cpu"),
            "cores": meta.get("machine", {}).get("cores_usable"),
            "threads": meta.get("settings", {}).get("threads"),
            "zarrcrop": meta.get("versions", {}).get("zarrcrop"),
            "commit": run.raw.get("commit_info", {}).get("id"),
        }

    out = {
        "description": "zarrcrop / zarr-python crops/s per case, measured in the same run; "
        "<case>/loop = zarrcrop single-crop loop, <case>/batch = zarrcrop read_crops; the "
        "lowest of the source runs. Checked by `python bench/gate.py RUN.json`, rewritten by "
        "`python bench/gate.py RUN.json [RUN2.json ...] --update`.",
        "stat": stat,
        "tolerance": tolerance,
        "source": source(runs[0]) if len(runs) == 1 else [source(run) for run in runs],
        "baselines": {key: merged[key] for key in sorted(merged)},
    }
    path.write_text(json.dumps(out, indent=2) + "\n")
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/gate.py",
        description="Fail (exit 1) when a case's zarrcrop / zarr-python crops/s ratio is more "
        "than the tolerance below its baseline in bench/baselines.json.",
    )
    parser.add_argument(
        "json",
        type=Path,
        nargs="+",
        help="a --benchmark-json file of the bench suite (with --update: one or more, the "
        "lowest ratio of each case becomes its baseline)",
    )
    parser.add_argument("--baselines", type=Path, default=DEFAULT_BASELINES)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help=f"allowed drop below baseline (default: the file's, else {DEFAULT_TOLERANCE})",
    )
    parser.add_argument("--stat", choices=STATS, default=None, help="default: the file's/mean")
    parser.add_argument(
        "--ab",
        action="store_true",
        help="judge the regressed cases by an A/B of the baselines' build against this one "
        "in one process (zcbench/ab_judge.py); fail only on those slower there",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="rewrite the baselines of the cases in this run from it (others are kept)",
    )
    args = parser.parse_args(argv)

    try:
        data = _load_baselines(args.baselines)
    except ValueError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    tolerance = float(
        args.tolerance if args.tolerance is not None else data.get("tolerance", DEFAULT_TOLERANCE)
    )
    stat = str(args.stat or data.get("stat", "mean"))
    if len(args.json) > 1 and not args.update:
        print("gate: checks one run at a time (several only with --update)", file=sys.stderr)
        return EXIT_NO_DATA
    runs = [load_run(path, stat) for path in args.json]
    current = lowest_ratios(runs)
    if not current:
        names = ", ".join(str(path) for path in args.json)
        print(f"gate: {names}: no case with both zarrcrop and zarr-python", file=sys.stderr)
        return EXIT_NO_DATA

    if args.update:
        merged = write_baselines(args.baselines, runs, current, tolerance, stat)
        print(
            f"gate: wrote {len(current)} baselines ({len(merged)} in all, the lowest of "
            f"{len(runs)} run(s)) to {args.baselines}"
        )
        return 0

    rows = compare(current, data.get("baselines", {}), tolerance)
    print(f"Regression gate: zarrcrop / zarr-python ({stat} round time), tolerance {tolerance:.0%}")
    print()
    print("| Case | Baseline | This run | Change | Status |")
    print("|:---|---:|---:|---:|:---|")
    for key, base, now, status in rows:
        change = "-" if base is None or now is None else f"{(now / base - 1):+.0%}"
        b = "-" if base is None else f"{base:.2f}x"
        n = "-" if now is None else f"{now:.2f}x"
        print(f"| {key} | {b} | {n} | {change} | {status} |")
    regressions = [row for row in rows if row[3] == "REGRESSION"]
    print()
    if regressions:
        print(f"gate: FAIL, {len(regressions)} case(s) more than {tolerance:.0%} below baseline:")
        for key, base, now, _ in regressions:
            assert base is not None and now is not None
            print(f"  {key}: {now:.2f}x < {base:.2f}x * {1 - tolerance:.2f}")
        if args.ab:
            slower = ab_judge.judge([row[0] for row in regressions], args.baselines)
            if not slower:
                print("\ngate: ok after the A/B (as fast as the baselines' build)")
                return 0
            print(f"\ngate: FAIL, slower than the baselines' build: {', '.join(slower)}")
        return EXIT_REGRESSION
    checked = sum(1 for row in rows if row[3] == "ok")
    if checked == 0:
        print(
            f"gate: no case of this run has a baseline in {args.baselines}; create them with "
            "`python bench/gate.py RUN.json --update`",
            file=sys.stderr,
        )
        return EXIT_NO_DATA
    print(f"gate: ok ({checked} case(s) checked)")
    return 0
