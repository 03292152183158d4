"""Process-wide settings read from the environment."""

from __future__ import annotations

import os

STRICT_ENV = "ZARRCROP_STRICT"


def strict_default() -> bool:
    """True when ``ZARRCROP_STRICT`` is set to 1/true/yes/on (read at every open)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_strict(strict: bool | None) -> bool:
    return strict_default() if strict is None else bool(strict)
