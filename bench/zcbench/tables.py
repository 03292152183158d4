"""Markdown table formatting shared by the report's sections."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["cps", "pct", "ratio", "table", "target_row"]


def cps(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    marks = {"l": ":---", "r": "---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def target_row(
    label: str, case: str, value: float | None, threshold: float, as_ratio: bool
) -> tuple[str, str, str, str, str]:
    """(target, case, measured, required, PASS/FAIL/n/a) of a target table; the value and the
    threshold as a ratio (2.50x) or a fraction (85%)."""
    fmt = ratio if as_ratio else pct
    status = "n/a (not measured)" if value is None else "PASS" if value >= threshold else "FAIL"
    return (label, case, fmt(value), ">= " + fmt(threshold), status)
