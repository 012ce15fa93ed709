"""What each tracker already holds, so a second sync adds only what is new.

One file per grid, ``GridDir.sync_state_file``: ``{"v": 1, "targets": {TARGET: {"grid": {...},
"runs": {RUN_ID: {...}}}}}``, where TARGET names the tracker and its destination
("tensorboard /abs/logdir", "mlflow URI experiment NAME"). A run's entry records the last
epoch sent, which results and export figures were sent, the files uploaded (size, mtime
and SHA-256: a rewritten file with the same bytes is not sent again) and whether the run
was closed. Written atomically by the store's writer after every run, so an interrupted
sync resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import StoreError
from engine.store import GridDir, MissingFile, atomic_write_json, read_json_object

VERSION = 1


@dataclass
class Counts:
    """What one sync sent (per grid)."""

    runs: int = 0
    epochs: int = 0
    results: int = 0
    files: int = 0
    closed: int = 0
    skipped: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in ("runs", "epochs", "results", "files", "closed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped += other.skipped

    def describe(self) -> str:
        if not (self.epochs or self.results or self.files or self.closed):
            return "nothing new"
        return (f"{self.runs} run(s) updated: {self.epochs} epoch(s), {self.results} result set(s), "
                f"{self.files} file(s), {self.closed} run(s) closed")


class SyncState:
    def __init__(self, gdir: GridDir, target: str):
        self.gdir = gdir
        self.target = target
        try:
            self._all = read_json_object(gdir.sync_state_file)
        except MissingFile:
            self._all = {}
        except StoreError:  # torn or foreign: start over (the worst case is a resend)
            self._all = {}
        if self._all.get("v") != VERSION or not isinstance(self._all.get("targets"), dict):
            self._all = {"v": VERSION, "targets": {}}
        entry = self._all["targets"].setdefault(target, {})
        self.grid: dict[str, Any] = entry.setdefault("grid", {})
        self.runs: dict[str, dict[str, Any]] = entry.setdefault("runs", {})

    def run(self, run_id: str) -> dict[str, Any]:
        return self.runs.setdefault(run_id, {})

    def save(self) -> None:
        atomic_write_json(self.gdir.sync_state_file, self._all)


def fingerprint(values: Any) -> str:
    """A digest of JSON-ready values: results or figures sent once are not sent again unchanged."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_changed(memo: dict[str, Any], key: str, path: Path) -> bool:
    """Whether ``path`` differs from what ``memo[key]`` records; records it when it does."""
    st = path.stat()
    stat = f"{st.st_size}:{st.st_mtime_ns}"
    seen = memo.get(key)
    if isinstance(seen, dict) and seen.get("stat") == stat:
        return False
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    sha = h.hexdigest()
    memo[key] = {"stat": stat, "sha256": sha}
    return not (isinstance(seen, dict) and seen.get("sha256") == sha)
