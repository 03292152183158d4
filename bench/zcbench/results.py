"""Reading a pytest-benchmark JSON of this suite: crops/s per reader, ratios, decode bounds."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cases import CASES, READERS

__all__ = [
    "STATS",
    "CaseResult",
    "Measurement",
    "Run",
    "gate_ratios",
    "load_run",
]

#: Which round time crops/s is computed from. "mean" (the default) is total crops over total
#: time of the timed rounds, which is what the decode bound (over the same crops) compares to.
STATS = ("mean", "median", "min")

PEERS = ("zarr-python", "tensorstore", "zarrs")


@dataclass(frozen=True)
class Measurement:
    """One benchmark (one reader on one case)."""

    name: str
    case: str
    reader: str
    mode: str
    crops_per_round: int
    rounds: int
    round_seconds: float
    decode_bound: float | None  # crops/s, zarrcrop readers only
    # crops/s from the fastest read of each batch (zarrcrop readers read each batch several
    # times): the bound's estimator, the fastest of its measurements of each batch.
    best_crops_per_s: float | None = None

    @property
    def crops_per_s(self) -> float:
        return self.crops_per_round / self.round_seconds

    @property
    def bound_fraction(self) -> float | None:
        """Fastest read of each batch against the fastest decode of it (like with like);
        the mean-round fraction for runs that did not record the fastest reads."""
        if self.best_crops_per_s is None:
            return self.mean_bound_fraction
        if self.decode_bound is None or self.decode_bound <= 0:
            return None
        return self.best_crops_per_s / self.decode_bound

    @property
    def mean_bound_fraction(self) -> float | None:
        """crops/s from the run's statistic (mean round time) against the bound."""
        if self.decode_bound is None or self.decode_bound <= 0:
            return None
        return self.crops_per_s / self.decode_bound


@dataclass
class CaseResult:
    """The readers of one case, measured in the same run."""

    case: str
    readers: dict[str, Measurement] = field(default_factory=dict)

    def cps(self, reader: str) -> float | None:
        m = self.readers.get(reader)
        return None if m is None else m.crops_per_s

    def ratio(self, reader: str, other: str) -> float | None:
        a, b = self.cps(reader), self.cps(other)
        if a is None or b is None or b <= 0:
            return None
        return a / b

    def bound(self, reader: str) -> float | None:
        m = self.readers.get(reader)
        return None if m is None else m.decode_bound

    def bound_fraction(self, reader: str) -> float | None:
        m = self.readers.get(reader)
        return None if m is None else m.bound_fraction

    def mean_bound_fraction(self, reader: str) -> float | None:
        m = self.readers.get(reader)
        return None if m is None else m.mean_bound_fraction

    @property
    def crops_per_round(self) -> int | None:
        values = {m.crops_per_round for m in self.readers.values()}
        return values.pop() if len(values) == 1 else None


@dataclass
class Run:
    """A whole benchmark JSON."""

    path: Path
    stat: str
    cases: dict[str, CaseResult]
    meta: dict[str, Any]
    raw: dict[str, Any]

    def case(self, case_id: str) -> CaseResult | None:
        return self.cases.get(case_id)


def _case_order(case_ids: Iterable[str]) -> list[str]:
    known = [case.id for case in CASES]
    ids = set(case_ids)
    return [c for c in known if c in ids] + sorted(ids.difference(known))


def load_run(path: str | Path, stat: str = "mean") -> Run:
    """Parse a ``--benchmark-json`` file written by ``python -m pytest bench``."""
    if stat not in STATS:
        raise ValueError(f"stat must be one of {STATS}, got {stat!r}")
    path = Path(path)
    raw = json.loads(path.read_text())
    by_case: dict[str, CaseResult] = {}
    for bench in raw.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "case" not in info or "reader" not in info:
            continue  # not one of test_crops' benchmarks
        seconds = float(bench["stats"][stat])
        if not math.isfinite(seconds) or seconds <= 0:
            continue
        bound = info.get("decode_bound_crops_per_s")
        best = info.get("best_crops_per_s")
        m = Measurement(
            name=bench.get("name", ""),
            case=str(info["case"]),
            reader=str(info["reader"]),
            mode=str(info.get("mode", "loop")),
            crops_per_round=int(info["crops_per_round"]),
            rounds=int(bench["stats"].get("rounds", 0)),
            round_seconds=seconds,
            decode_bound=None if bound is None else float(bound),
            best_crops_per_s=None if best is None else float(best),
        )
        by_case.setdefault(m.case, CaseResult(m.case)).readers[m.reader] = m
    cases = {case_id: by_case[case_id] for case_id in _case_order(by_case)}
    for result in cases.values():
        result.readers = {
            r: result.readers[r]
            for r in [*READERS, *sorted(set(result.readers) - set(READERS))]
            if r in result.readers
        }
    return Run(path, stat, cases, raw.get("zarrcrop_bench", {}), raw)


def gate_ratios(run: Run) -> dict[str, float]:
    """The gated figures: ``<case>/loop`` = zarrcrop / zarr-python, ``<case>/batch`` =
    zarrcrop read_crops / zarr-python (zarr-python reading the same crops in a loop)."""
    ratios: dict[str, float] = {}
    for case_id, result in run.cases.items():
        for key, reader in (("loop", "zarrcrop"), ("batch", "zarrcrop-batch")):
            value = result.ratio(reader, "zarr-python")
            if value is not None:
                ratios[f"{case_id}/{key}"] = value
    return ratios
