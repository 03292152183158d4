"""CropGroup: a read-only zarr group whose arrays are CropArrays."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import zarr

from ._native import describe_location
from .array import CropArray

__all__ = ["CropGroup"]


# zarr.Group methods that create members: a read-only CropGroup names the way to write.
_WRITE_METHODS = frozenset(
    {"create_dataset", "create_array", "require_dataset", "require_array", "create_group",
     "require_group", "create", "array", "empty", "zeros", "ones", "full", "empty_like",
     "zeros_like", "ones_like", "full_like", "__setitem__", "__delitem__"}
)  # fmt: skip


class CropGroup:
    """A read-only view of a zarr group, navigated like ``zarr.Group``.

    ``g["gt"]``, ``g["lr/720p/rgb"]`` and ``g["lr"]["720p"]["rgb"]`` return
    :class:`CropArray` for arrays and :class:`CropGroup` for subgroups.
    """

    def __init__(
        self, group: zarr.Group, *, strict: bool | None = None, cache_bytes: int = 0
    ) -> None:
        self._group = group
        self._strict = strict
        self._cache_bytes = cache_bytes

    @property
    def zarr(self) -> zarr.Group:
        """The underlying zarr-python group."""
        return self._group

    @property
    def path(self) -> str:
        return str(self._group.path)

    @property
    def name(self) -> str:
        return str(self._group.name)

    @property
    def attrs(self) -> Any:
        """The group's attributes (zarr-python's Attributes object)."""
        return self._group.attrs

    @property
    def zarr_format(self) -> int:
        return int(self._group.metadata.zarr_format)

    def _wrap(self, node: Any) -> CropArray | CropGroup:
        if isinstance(node, zarr.Array):
            return CropArray(node, strict=self._strict, cache_bytes=self._cache_bytes)
        return CropGroup(node, strict=self._strict, cache_bytes=self._cache_bytes)

    def __getitem__(self, key: str) -> Any:
        """The member ``key`` (a path such as ``"lr/720p/rgb"``): a CropArray or a CropGroup.

        Typed ``Any``, as the kind of a member is known only at run time (narrow it with
        ``isinstance`` where it matters); a missing member raises KeyError listing those there.
        """
        try:
            node = self._group[key]
        except KeyError:
            raise KeyError(self._missing(key)) from None  # zarr's chain says nothing more
        return self._wrap(node)

    def _missing(self, key: str) -> str:
        """Why ``key`` is not a member: the deepest group on its path and what that holds."""
        parts = [p for p in str(key).split("/") if p]
        where = describe_location(self._group)
        for depth in range(len(parts) - 1, -1, -1):
            prefix = "/".join(parts[:depth])
            try:
                node = self._group[prefix] if prefix else self._group
            except KeyError:
                continue
            inside = f"{prefix!r} in the group at {where}" if prefix else f"the group at {where}"
            if isinstance(node, zarr.Array):
                return f"{key!r}: {inside} is an array, not a group"
            names = sorted(node.keys())
            listed = ", ".join(map(repr, names[:20])) + (", ..." if len(names) > 20 else "")
            members = f"its members: {listed}" if names else "it has no members"
            return f"{key!r}: no member {parts[depth]!r} in {inside}; {members}"
        return f"{key!r}: no such member in the group at {where}"  # pragma: no cover

    if not TYPE_CHECKING:  # at run time only: type checkers still flag creation calls

        def __getattr__(self, name: str) -> Any:
            # Only reached for names the class lacks: say how to write instead of a bare
            # AttributeError when a creation method is called on a read-only group.
            if name in _WRITE_METHODS and "_group" in self.__dict__:
                raise AttributeError(
                    f"{name}: the group at {describe_location(self._group)} is open read-only; "
                    "open it with zarrcrop.open_group(path, mode='r+') (or mode='a') to create "
                    "arrays and groups in it"
                )
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._group

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self) -> list[str]:
        """Names of the direct members, sorted as zarr-python lists them."""
        return list(self._group.keys())

    def array_keys(self) -> list[str]:
        return list(self._group.array_keys())

    def group_keys(self) -> list[str]:
        return list(self._group.group_keys())

    def arrays(self) -> Iterator[tuple[str, CropArray]]:
        """(name, CropArray) for the direct member arrays."""
        for name, node in self._group.arrays():
            yield name, CropArray(node, strict=self._strict, cache_bytes=self._cache_bytes)

    def groups(self) -> Iterator[tuple[str, CropGroup]]:
        """(name, CropGroup) for the direct subgroups."""
        for name, node in self._group.groups():
            yield name, CropGroup(node, strict=self._strict, cache_bytes=self._cache_bytes)

    def members(self) -> Iterator[tuple[str, CropArray | CropGroup]]:
        for name, node in self._group.members():
            yield name, self._wrap(node)

    def tree(self) -> Any:
        return self._group.tree()

    def __repr__(self) -> str:
        return f"<zarrcrop.CropGroup {self._group.store}/{self.path}>"
