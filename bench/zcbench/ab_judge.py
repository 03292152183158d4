"""The gate's last word on a case that regressed in two runs: this build against the baselines'.

A zarrcrop / zarr-python ratio moves with the machine as well as with the code (zarr-python's
costs and zarrcrop's scale differently when a VM is slower or busier), so two low runs can
still be the machine. The question the gate asks is whether the code got slower; this module
answers it directly: it builds the extension at the commit the baselines were measured with,
and reads the case with that build and this one in one process, batch by batch, in alternating
order (``bench/ab_builds.py``), so drift hits both alike. A case fails only if this build is
more than ``AB_TOLERANCE`` slower there.

The A/B covers the native read path (``CropReader.read_crops``; ``<case>/loop`` as batches of
one crop), not Python-side changes around it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .cases import CASES

__all__ = ["AB_TOLERANCE", "baseline_commit", "build_extension", "judge"]

#: Allowed slowdown of this build in the A/B (in one process it resolves 1-2%).
AB_TOLERANCE = 0.03

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
BUILDS_DIR = BENCH_DIR / ".results" / "builds"

_PASS = re.compile(r"^pass \d+: crops/s ([0-9.]+), ([0-9.]+)$")


def baseline_commit(baselines_path: Path) -> str | None:
    """The commit the baselines were measured at (None when the file names none or several)."""
    source = json.loads(baselines_path.read_text()).get("source", [])
    sources = source if isinstance(source, list) else [source]
    commits = {s.get("commit") for s in sources if isinstance(s, dict)}
    return commits.pop() if len(commits) == 1 and None not in commits else None


def _cmake_dirs() -> list[str]:
    """-D options that find the venv's static C-Blosc2 and pybind11, as the pip build does."""
    import blosc2
    import pybind11

    blosc2_dir = Path(blosc2.__file__).parent / "lib" / "cmake" / "blosc2"
    return [
        f"-DBlosc2_DIR={blosc2_dir}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]


def build_extension(commit: str) -> Path:
    """The ``_core`` extension of ``commit``, built once (Release, as the package) and kept in
    bench/.results/builds/."""
    BUILDS_DIR.mkdir(parents=True, exist_ok=True)
    out = BUILDS_DIR / f"{commit}.so"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix="zarrcrop-ab-") as tmp:
        src, build = Path(tmp) / "src", Path(tmp) / "build"
        src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
            check=True,
            capture_output=True,
        ).stdout
        tar_path = Path(tmp) / "src.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(src, filter="data")
        configure = ["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja"]
        subprocess.run(
            [*configure, "-DCMAKE_BUILD_TYPE=Release", *_cmake_dirs()],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["cmake", "--build", str(build)], check=True, stdout=subprocess.DEVNULL)
        built = sorted(build.glob("_core*.so"))
        if not built:
            raise RuntimeError(f"building {commit}: no _core extension in {build}")
        shutil.copy2(built[0], out)
    return out


def current_extension() -> Path:
    """The installed extension that the suite just measured."""
    from zarrcrop import _core

    return Path(_core.__file__)


def ab_rates(old: Path, new: Path, case: str, batch: int) -> tuple[float, float]:
    """crops/s of (old, new) over three passes of ``bench/ab_builds.py``."""
    batches = 40 if batch > 1 else 160
    command = [sys.executable, str(BENCH_DIR / "ab_builds.py"), str(old), str(new)]
    command += ["--case", case, "--batch", str(batch), "--batches", str(batches), "--reps", "3"]
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    print(result.stdout, end="", flush=True)
    rates = [m.groups() for line in result.stdout.splitlines() if (m := _PASS.match(line))]
    if not rates:
        raise RuntimeError(f"ab_builds.py printed no rates for {case}:\n{result.stdout}")
    return float(rates[-1][0]), float(rates[-1][1])


def judge(keys: Sequence[str], baselines_path: Path, log: list[str] | None = None) -> list[str]:
    """The gate keys (``<case>/loop``, ``<case>/batch``) of ``keys`` that this build reads
    more than AB_TOLERANCE slower than the baselines' build; a key the A/B cannot check (no
    baseline commit, a case ab_builds.py does not read, a failed build) stays failed. One line
    per key (and per problem) is printed and appended to ``log``."""
    lines = log if log is not None else []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    commit = baseline_commit(baselines_path)
    if commit is None:
        say(f"{baselines_path.name} names no single commit: no A/B, the cases stay failed")
        return list(keys)
    try:
        old = build_extension(commit)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        say(f"building the baselines' commit {commit[:10]} failed ({exc}): the cases stay failed")
        return list(keys)
    new = current_extension()
    known = {c.id for c in CASES}
    failed: list[str] = []
    print(f"\ngate: A/B of {commit[:10]} (baselines) against this build, in one process")
    for key in keys:
        case, mode = key.rsplit("/", 1)
        if case not in known:
            say(f"{key}: no A/B for this case; stays failed")
            failed.append(key)
            continue
        try:
            old_rate, new_rate = ab_rates(old, new, case, 16 if mode == "batch" else 1)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            say(f"{key}: A/B failed ({exc}); stays failed")
            failed.append(key)
            continue
        change = new_rate / old_rate - 1.0
        verdict = "slower: FAIL" if change < -AB_TOLERANCE else "ok"
        say(
            f"{key}: the baselines' build ({commit[:10]}) {old_rate:.1f}, this build "
            f"{new_rate:.1f} crops/s ({change:+.1%}), {verdict}"
        )
        if change < -AB_TOLERANCE:
            failed.append(key)
    return failed
