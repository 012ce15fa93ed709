"""The error hierarchy: what a user can fix, and how a failed run is labelled.

``UserError`` is the base of every mistake a user can act on (config, data,
weights, store): the CLI prints its message as one line and exits 2. A failed
run carries a ``kind`` (``FAILURE_KINDS``) in its ``failed`` event, decided by
``engine.failures.classify`` from the exception's type, never from its name.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

# kind of a failed run, as written in its failed event and shown by `runs` and the TUI
FAILURE_KINDS = ("user", "oom", "disk_full", "killed", "crash")


class UserError(Exception):
    """A mistake the user can fix; the message is one line naming what, where and what to do."""


class StoreError(UserError):
    """A store file is missing or unreadable, or a grid/run name doesn't resolve; the message names it."""


class DiskFull(StoreError):
    """A write to the run store failed for lack of space (ENOSPC or EDQUOT)."""

    def __init__(self, where: str | Path, free_mb: float | None = None):
        self.where = Path(where)  # the folder the write went to
        self.free_mb = free_mb if free_mb is not None else free_megabytes(self.where)
        super().__init__(disk_full_message(self.where, self.free_mb))


def free_megabytes(path: str | Path) -> float | None:
    """Free space on the filesystem holding ``path`` (its nearest existing parent), in MB."""
    p = Path(path)
    for candidate in (p, *p.parents):
        try:
            return shutil.disk_usage(candidate).free / 1e6
        except OSError:
            continue
    return None


def disk_full_message(where: str | Path, free_mb: float | None = None) -> str:
    """The one line for a full disk: "disk full: N MB free on PATH; ..." (the figure read now if not given)."""
    free_mb = free_megabytes(where) if free_mb is None else free_mb
    free = "?" if free_mb is None else f"{free_mb:.0f}"
    return f"disk full: {free} MB free on {where}; free some space, then run the grid again to resume"


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception's chain (torch and safetensors wrap OSErrors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True  # torch.save / safetensors re-raise the OSError as RuntimeError text
        exc = exc.__cause__ or exc.__context__
    return False
