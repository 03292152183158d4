"""Run the benchmark suite, report it, and gate it: the one documented entry point.

    python bench/run.py [--json PATH] [--write-results bench/RESULTS.md] [--note TEXT]
                        [--no-gate] [--no-confirm] [--no-ab] [--update-baselines]
                        [PYTEST ARGS ...]

1. ``python -m pytest bench --benchmark-json=PATH [PYTEST ARGS]`` from the repository root
   (PATH defaults to ``bench/.results/run-<UTC time>.json``; extra arguments such as
   ``-k photo-v2-960`` or ``--bench-rounds 8`` go to pytest);
2. ``python bench/report.py PATH`` (and writes RESULTS.md with ``--write-results``);
3. ``python bench/gate.py PATH`` (or ``--update`` with ``--update-baselines``); when it
   fails, the regressed cases are run once more; a case that regresses again is read by the
   baselines' commit's build and this one in one process (``zcbench/ab_judge.py``), and fails
   the gate only if this build is slower there (``--no-confirm``: fail on the first run;
   ``--no-ab``: fail on the second).

Exits non-zero when pytest failed (for example the memory check) or the gate failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

sys.path.insert(0, str(BENCH_DIR))

from zcbench import ab_judge, gate, report  # noqa: E402
from zcbench.results import gate_ratios, load_run  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Run zarrcrop's benchmarks (pytest bench/), print the report, run the "
        "regression gate. Unknown arguments are passed to pytest.",
    )
    parser.add_argument("--json", type=Path, help="benchmark JSON to write")
    parser.add_argument(
        "--write-results", type=Path, metavar="PATH", help="write RESULTS.md to PATH"
    )
    parser.add_argument("--note", action="append", default=[], help="note for RESULTS.md")
    parser.add_argument("--no-gate", action="store_true", help="skip the regression gate")
    parser.add_argument(
        "--no-confirm",
        action="store_true",
        help="fail on the first gate result (default: rerun the regressed cases once and "
        "fail only on cases that regress in both runs)",
    )
    parser.add_argument(
        "--no-ab",
        action="store_true",
        help="fail on cases that regress in both runs without the A/B of builds that judges "
        "them (default: build the baselines' commit and compare in one process)",
    )
    parser.add_argument(
        "--update-baselines",
        action="store_true",
        help="rewrite bench/baselines.json from this run instead of gating",
    )
    args, pytest_args = parser.parse_known_args(argv)

    if args.json is None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        args.json = BENCH_DIR / ".results" / f"run-{stamp}.json"
    json_path = args.json.resolve()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.unlink(missing_ok=True)

    command = _pytest_command(json_path, [*pytest_args])
    env = dict(os.environ)
    env["ZARRCROP_BENCH_COMMAND"] = shlex.join(["python", "bench/run.py", *argv])
    print("+", shlex.join(command), flush=True)
    start = time.perf_counter()
    pytest_rc = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    seconds = time.perf_counter() - start
    print(f"\nbench/run.py: pytest finished in {seconds / 60:.1f} min (exit {pytest_rc})")
    if not json_path.exists():
        print(f"bench/run.py: no benchmark JSON at {json_path}", file=sys.stderr)
        return pytest_rc or 2

    print(f"\n## Report ({json_path})\n", flush=True)
    report_args = [str(json_path), "--suite-seconds", f"{seconds:.1f}"]
    if args.write_results:
        report_args += ["--write-results", str(args.write_results)]
    for note in args.note:
        report_args += ["--note", note]
    report_rc = report.main(report_args)

    gate_rc = 0
    if args.update_baselines:
        gate_rc = gate.main([str(json_path), "--update"])
    elif not args.no_gate:
        print()
        gate_rc = gate.main([str(json_path)])
        verdict = [_first_verdict(json_path, gate_rc)]
        if gate_rc == gate.EXIT_REGRESSION and not args.no_confirm:
            gate_rc = _confirm(json_path, pytest_args, env, verdict, ab=not args.no_ab)
        verdict.append("verdict: " + ("ok" if gate_rc == 0 else f"FAIL (exit {gate_rc})"))
        if args.write_results:
            _append_gate(args.write_results, verdict)
    for what, rc in (("pytest", pytest_rc), ("report", report_rc), ("gate", gate_rc)):
        if rc:
            print(f"bench/run.py: {what} failed (exit {rc})", file=sys.stderr)
    return pytest_rc or gate_rc or report_rc


def _pytest_command(json_path: Path, pytest_args: Sequence[str]) -> list[str]:
    """``python -m pytest bench`` writing its benchmark JSON to json_path."""
    return [
        sys.executable,
        "-m",
        "pytest",
        os.path.relpath(BENCH_DIR, ROOT),
        f"--benchmark-json={json_path}",
        "--benchmark-columns=min,mean,median,stddev,rounds",
        "--benchmark-sort=name",
        *pytest_args,
    ]


def _without_k(args: Sequence[str]) -> list[str]:
    """pytest arguments without their -k selection (the rerun selects its own cases)."""
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "-k":
            skip = True
        elif not a.startswith("-k"):
            out.append(a)
    return out


def _first_verdict(json_path: Path, rc: int) -> str:
    if rc == 0:
        return "first run: every case within 10% of its baseline"
    if rc != gate.EXIT_REGRESSION:
        return f"first run: no verdict (gate exit {rc})"
    return "first run: below baseline by more than 10%: " + ", ".join(
        gate.regressed_cases(json_path)
    )


def _append_gate(results: Path, verdict: Sequence[str]) -> None:
    """The gate's outcome at the end of RESULTS.md (the report is written before it runs)."""
    lines = ["", "### Regression gate of this run", "", *(f"- {line}" for line in verdict)]
    with results.open("a") as f:
        f.write("\n".join(lines) + "\n")


def _confirm(
    json_path: Path,
    pytest_args: Sequence[str],
    env: dict[str, str],
    verdict: list[str],
    *,
    ab: bool,
) -> int:
    """Rerun the regressed cases (zarrcrop and zarr-python readers) once; a case that regresses
    again goes to the A/B of builds (with ``ab``), which fails it only if this build is slower
    than the baselines'. Ratios of one run swing by about 10% on a noisy machine (the
    zarr-python side as much as zarrcrop's), and move with the machine, so ratios alone flag
    unchanged builds."""
    first = gate.regressed_cases(json_path)
    cases = sorted({key.rsplit("/", 1)[0] for key in first})
    expr = " or ".join(f"{case}-zarrcrop or {case}-zarr-python" for case in cases)
    rerun = json_path.with_name(json_path.stem + "-confirm.json")
    rerun.unlink(missing_ok=True)
    command = _pytest_command(rerun, [*_without_k(pytest_args), "-k", expr])
    print(f"\nbench/run.py: confirming {', '.join(first)} with a second run", flush=True)
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=False)
    if not rerun.exists():
        print(f"bench/run.py: no benchmark JSON at {rerun}", file=sys.stderr)
        verdict.append("second run: wrote no benchmark JSON")
        return gate.EXIT_REGRESSION
    print()
    gate.main([str(rerun)])
    rerun_keys = set(gate_ratios(load_run(rerun)))
    again = set(gate.regressed_cases(rerun))
    confirmed = [key for key in first if key in again or key not in rerun_keys]
    verdict.append(
        "second run of those cases: "
        + (f"below again: {', '.join(confirmed)}" if confirmed else "all within 10%")
    )
    if confirmed and ab:
        print(f"\ngate: regressed in both runs: {', '.join(confirmed)}")
        ab_lines: list[str] = []
        slower = ab_judge.judge(confirmed, gate.DEFAULT_BASELINES, ab_lines)
        verdict.extend(f"A/B in one process: {line}" for line in ab_lines)
        if slower:
            print(f"\ngate: FAIL, slower than the baselines' build: {', '.join(slower)}")
            return gate.EXIT_REGRESSION
        print("\ngate: ok after the A/B (this build reads those cases as fast as the baselines')")
        return 0
    if confirmed:
        print(f"\ngate: FAIL, regressed in both runs: {', '.join(confirmed)}")
        return gate.EXIT_REGRESSION
    print(f"\ngate: ok after confirmation ({', '.join(first)} within tolerance in the second run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
