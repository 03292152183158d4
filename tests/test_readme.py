"""The Python examples of README.md and docs/*.md run as written.

Each file's ```python blocks run in order, in one namespace (a block may use what an earlier
block of the same file defined), in a subprocess whose working directory is a fresh temporary
directory, so the files the examples write land there. There is one test per block, so a
failure names the block (file, number, line); the file's blocks run once, on the first of its
tests. A block that imports torch (or ``zarrcrop.torch``) is skipped, with the reason, when
torch cannot be imported. A block preceded by ``<!-- not-run: reason -->`` is not run (use it
sparingly). Blocks in other languages (```bash, or ``` with none) are never run.

Also checked: the README's quick-start commands, and that relative links between these files
point at files and headings that exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TIMEOUT_S = 600  # per file; the examples are meant to take seconds

QUICK_START = 'pip install . && zarrcrop demo\npip install ".[test]" && python -m pytest tests\n'

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")
USES_TORCH = re.compile(r"^\s*(import torch\b|from torch\b|(from|import) zarrcrop\.torch\b)", re.M)


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    number: int  # 1-based, among the file's python blocks
    line: int  # line of the opening fence
    code: str
    not_run: str | None  # the reason of a <!-- not-run: ... --> marker

    @property
    def uses_torch(self) -> bool:
        return bool(USES_TORCH.search(self.code))

    @property
    def label(self) -> str:
        return f"{self.doc} block {self.number} (line {self.line})"


def fenced_blocks(path: Path) -> list[tuple[str, int, str, str | None]]:
    """(language, fence line, code, not-run reason) of every fenced block of a Markdown file."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    previous = ""  # the last non-blank line before the current one
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, start = len(match["indent"]), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: code block never closed")
        marker = NOT_RUN.match(previous)
        blocks.append(
            (match["lang"], start + 1, "\n".join(body) + "\n", marker and marker["reason"])
        )
        previous = lines[i]
        i += 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    doc = path.relative_to(REPO).as_posix()
    found = [b for b in fenced_blocks(path) if b[0] == "python"]
    return [Block(doc, n, line, code, reason) for n, (_, line, code, reason) in enumerate(found, 1)]


ALL_BLOCKS = [block for path in DOC_FILES for block in python_blocks(path)]

# Runs the blocks given in a JSON file, one namespace, and appends one JSON line per block to
# the results file as it goes (so a timeout still says which block was running). Guarded by
# __main__: DataLoader workers started with spawn/forkserver import this file again.
RUNNER = r"""
import json, linecache, sys, traceback

def main(blocks_file, results_file):
    blocks = json.load(open(blocks_file))
    namespace = {"__name__": "__main__"}
    torch_error = None
    with open(results_file, "a") as results:
        def record(**fields):
            results.write(json.dumps(fields) + "\n")
            results.flush()
        for block in blocks:
            if block["not_run"]:
                reason = "not-run: " + block["not_run"]
                record(number=block["number"], status="skipped", reason=reason)
                continue
            if block["uses_torch"]:
                if torch_error is None:
                    try:
                        import torch  # noqa: F401
                        torch_error = ""
                    except Exception as exc:
                        torch_error = f"{type(exc).__name__}: {exc}"
                if torch_error:
                    record(number=block["number"], status="skipped",
                           reason=f"uses torch, which cannot be imported ({torch_error})")
                    continue
            record(number=block["number"], status="started")
            print(f"===== {block['label']}", flush=True)
            # Padded so that tracebacks give the Markdown file's line numbers, and show them.
            source = "\n" * block["line"] + block["code"]
            filename = f"{block['doc']} (block {block['number']})"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                exec(compile(source, filename, "exec"), namespace)
            except BaseException:
                record(number=block["number"], status="failed", error=traceback.format_exc())
                return 1
            record(number=block["number"], status="passed")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
"""


@dataclass
class FileRun:
    results: dict[int, dict[str, str]]  # block number -> its last record
    output: str  # the tail of the subprocess's output (stdout and stderr)
    timed_out: bool


_RUNS: dict[str, FileRun] = {}


def run_file(doc: str, workdir: Path) -> FileRun:
    """Run all python blocks of ``doc`` once per session; later calls return the same run."""
    if doc in _RUNS:
        return _RUNS[doc]
    blocks = [b for b in ALL_BLOCKS if b.doc == doc]
    runner, blocks_file, results_file = (workdir / n for n in ("run.py", "blocks.json", "results"))
    runner.write_text(RUNNER)
    blocks_file.write_text(
        json.dumps(
            [
                {
                    "number": b.number,
                    "label": b.label,
                    "doc": b.doc,
                    "line": b.line,
                    "code": b.code,
                    "not_run": b.not_run,
                    "uses_torch": b.uses_torch,
                }
                for b in blocks
            ]
        )
    )
    cwd = workdir / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARRCROP_")}
    env["PYTHONUNBUFFERED"] = "1"
    timed_out = False
    try:
        proc = subprocess.run(
            [sys.executable, str(runner), str(blocks_file), str(results_file)],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=TIMEOUT_S,
        )  # fmt: skip
        output = proc.stdout
    except subprocess.TimeoutExpired as exc:
        timed_out = True
        out = exc.stdout or ""
        output = out.decode(errors="replace") if isinstance(out, bytes) else out
    results: dict[int, dict[str, str]] = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            record = json.loads(line)
            results[record["number"]] = record
    _RUNS[doc] = FileRun(results, output[-6000:], timed_out)
    return _RUNS[doc]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: f"{b.doc}:{b.number}:L{b.line}")
def test_example_runs(block: Block, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = run_file(block.doc, tmp_path_factory.mktemp(Path(block.doc).stem))
    record = run.results.get(block.number)
    if record is None:
        earlier = [r for r in run.results.values() if r["status"] in ("failed", "started")]
        if earlier:  # that block's test fails; this one could not run without it
            pytest.skip(f"{block.label} not run: block {earlier[0]['number']} of {block.doc} "
                        "failed or did not finish before it")  # fmt: skip
        pytest.fail(f"{block.label} not run; the runner said:\n{run.output}", pytrace=False)
    status = record["status"]
    if status == "skipped":
        pytest.skip(f"{block.label}: {record['reason']}")
    if status == "started":
        why = f"timed out after {TIMEOUT_S} s" if run.timed_out else "the process died"
        pytest.fail(f"{block.label} did not finish ({why}):\n{run.output}", pytrace=False)
    if status == "failed":
        pytest.fail(f"{block.label} raised:\n{record['error']}\noutput:\n{run.output}",
                    pytrace=False)  # fmt: skip
    assert status == "passed", record


def test_blocks_are_found() -> None:
    """The parser sees the README's examples (a broken fence would hide them all)."""
    readme = [b for b in ALL_BLOCKS if b.doc == "README.md"]
    assert len(readme) >= 5, readme
    assert any("zarrcrop.open_group" in b.code for b in readme)
    assert any(b.uses_torch for b in readme)


def test_quick_start_commands() -> None:
    """The README's quick start keeps exactly its two commands, in one block."""
    blocks = [code for lang, _, code, _ in fenced_blocks(REPO / "README.md") if lang == ""]
    assert QUICK_START in blocks


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\[([^\]]*)\]\([^)]*\)", lambda m: m[1] or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # no headings inside code
    return {github_anchor(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    broken = []
    for match in LINK.finditer(text):
        target = match["target"]
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    assert not broken, "\n".join(broken)
