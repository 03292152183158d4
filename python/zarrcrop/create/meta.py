"""The ``zarrcrop`` attribute that marks a dataset written by ``create_dataset``.

The root group's holds ``complete`` (False until the last frame is written), the layout, the
crop size and the derived levels; each array's holds its layout and source dtype, and for
levels the scale and source array.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ATTR", "read_meta"]

#: Name of the attribute on the dataset's root group, arrays and level groups.
ATTR = "zarrcrop"


def read_meta(node: Any) -> dict[str, Any]:
    """A copy of the node's ``zarrcrop`` attribute (empty if it has none)."""
    value = node.attrs.get(ATTR)
    return dict(value) if isinstance(value, dict) else {}
