"""Name -> entry registries whose entries carry their behaviour (timm's ``register_model`` style).

Strategies, heads and presets register themselves with a decorator; the CLI's
choices and help and the config's validation read the names from here, so a new
entry needs no second edit anywhere. Torch-free: entries import what they need
when they run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from engine.errors import UserError

T = TypeVar("T")


class NotFound(UserError, KeyError, ValueError):
    """An unknown name; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    """Entries in registration order; ``reg[name]`` raises ``NotFound`` naming the choices."""

    def __init__(self, kind: str):
        self.kind = kind  # "strategy", "head", ...: used in messages
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Unregister (tests that register a throwaway entry clean up with this)."""
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise NotFound(f"{self.kind} {name!r} not found; choose one of {', '.join(self._entries)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
