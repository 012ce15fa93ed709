"""Liveness through ``flock``: a live process holds its lock file; the kernel drops it when it dies.

So anyone can tell a live worker (``run.lock``) or orchestrator (``grid.lock``)
from a dead one without guessing from pids.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """An exclusive flock; released automatically when the holder dies."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        self._write_pid()
        return True

    def _write_pid(self) -> None:
        try:  # the pid is for people reading the file; liveness is the lock itself
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.write(str(os.getpid()))
            self._fh.flush()
        except OSError:
            pass  # a full disk must not cost the lock

    @classmethod
    def adopt(cls, path: str | Path, fd: int) -> "FileLock":
        """The lock held through ``fd``, an open file description inherited from the process that took it."""
        lock = cls(path)
        lock._fh = os.fdopen(fd, "a+")
        lock._write_pid()
        return lock

    def fileno(self) -> int:
        assert self._fh is not None, "not held"
        return self._fh.fileno()

    def hand_over(self) -> None:
        """Close this process's handle but keep the lock: a child that inherited the handle holds it now.

        (flock belongs to the open file description, which the child shares; unlocking here would
        unlock it for the child too, so this closes without unlocking.)
        """
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None


def is_locked(path: str | Path) -> bool:
    """True while some live process holds the flock on ``path``."""
    try:
        fh = open(path, "r")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
    finally:
        fh.close()
