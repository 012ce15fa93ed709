"""What every store folder type shares: a path, equality by path, and a name."""

from __future__ import annotations

from pathlib import Path


class StoreFolder:
    """A folder of the store; cheap to make (no I/O until a method is called). Two are equal when they are the
    same type at the same path, so they key dictionaries and sets."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name
