"""Atomic file writes and strict JSON reads: the only way store files are written and read.

A write goes to a temp file in the same folder, is fsynced, then moved over
the target with ``os.replace`` (timm's CheckpointSaver does the same), so a
reader sees the old file or the new one, never half of one. A write that
fails for lack of space raises ``DiskFull`` naming the folder and the space
left, and leaves the previous file as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from engine.errors import DiskFull, StoreError, is_disk_full

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # mkstemp makes 0600; store files are as readable as any other file


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the temp file over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(path.parent) from exc
        raise
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # after: some writers (safetensors) replace the temp file with a 0600 one
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, Exception) and not isinstance(exc, DiskFull) and is_disk_full(exc):
            raise DiskFull(path.parent) from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | Path) -> Any:
    """The file's JSON; StoreError (missing / not valid JSON / unreadable) naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise MissingFile(f"{path} is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not valid JSON ({exc})") from None
    except OSError as exc:  # a folder in its place, no permission, I/O error
        raise StoreError(f"{path} can't be read ({exc.strerror or exc})") from None


def read_json_object(path: str | Path) -> dict:
    """read_json for files that must hold a JSON object."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise StoreError(f"{path} is not a JSON object")
    return obj


class MissingFile(StoreError):
    """The store file doesn't exist (yet): often a normal state, e.g. a run not exported."""
