"""The public API's annotations, checked with mypy --strict (skipped where mypy is missing).

tests/typing/readme_examples.py (README.md's examples) must pass; a file of misuses must fail
at exactly the lines marked, so the checks cannot pass by everything being ``Any``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_EXAMPLES = REPO / "tests" / "typing" / "readme_examples.py"

MISUSES = """
import zarrcrop

def misuses(path: str) -> None:
    ro = zarrcrop.open_group(path)
    ro.create_dataset("x", shape=(1,))  # E: read-only groups have no create_dataset
    zarrcrop.open_group(path, mode="rw")  # E: not a mode
    arr = zarrcrop.open(path)
    arr[0] = 1  # E: CropArray is read-only
    zarrcrop.open(path, cache_bytes="1")  # E: not an int
    zarrcrop.open_group(path, mode="w").create_dataset("x", shape=(1,))
"""


def _mypy(tmp_path: Path, cache_dir: Path, *files: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache_dir),
         "--no-error-summary", "--hide-error-context", *map(str, files)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def mypy_cache(request, tmp_path_factory):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy, or the dev extra)")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return cache.mkdir("mypy") if cache is not None else tmp_path_factory.mktemp("mypy")


def test_readme_examples_and_misuses_type_check(tmp_path, mypy_cache):
    misuses = tmp_path / "misuses.py"
    misuses.write_text(MISUSES)
    output = _mypy(tmp_path, mypy_cache, README_EXAMPLES, misuses)

    readme_errors = [line for line in output.splitlines() if "readme_examples.py" in line]
    assert not readme_errors, "\n".join(readme_errors)
    expected = {i for i, line in enumerate(MISUSES.splitlines(), 1) if "# E:" in line}
    flagged = {int(m) for m in re.findall(r"misuses\.py:(\d+): error", output)}
    assert flagged == expected, output
