"""What every store folder type shares: a path, equality by path, a name; and a cancel request (read leniently)."""

from __future__ import annotations

from pathlib import Path

from engine.store.atomic import atomic_write_text
from engine.store.locks import FileLock, is_locked


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


def cancel_reason_in(path: Path) -> str | None:
    """The reason a cancel request file gives; None when there is none (an unreadable one still cancels)."""
    try:
        return path.read_text(encoding="utf-8").strip() or "cancelled"
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError):
        return "cancelled"


class ControlledFolder(StoreFolder):
    """A folder one process drives while it holds ``lock_file``, stopped through ``cancel_file`` (a grid, a
    study). Subclasses name the two files and ``CANCEL_REASON``, the default reason."""

    CANCEL_REASON = "cancelled by user"
    lock_file: Path
    cancel_file: Path

    def running(self) -> bool:
        """Its process holds the lock right now."""
        return is_locked(self.lock_file)

    def lock(self) -> FileLock:
        return FileLock(self.lock_file)

    def request_cancel(self, reason: str = "") -> None:
        atomic_write_text(self.cancel_file, (reason or self.CANCEL_REASON) + "\n")

    def cancel_reason(self) -> str | None:
        return cancel_reason_in(self.cancel_file)

    def clear_cancel(self) -> None:
        self.cancel_file.unlink(missing_ok=True)
