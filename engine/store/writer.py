"""The worker's side of a run folder: append events, keep summary.json current."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from engine import events as ev
from engine.errors import DiskFull, is_disk_full
from engine.store.atomic import atomic_write_json
from engine.store.reader import load_run
from engine.store.run_dir import RunDir
from engine.store.summary import RunSummary, fold


class RunWriter:
    """Append each event to events.jsonl (flushed), echo it to stdout, fold it into summary.json.

    stdout is best effort: if the parent (orchestrator) died, the pipe is gone
    and the run carries on, writing to its folder only. A write that fails
    for lack of space raises DiskFull; the events file is left ending on a
    complete line (a torn tail is truncated away) so the next writer appends
    cleanly once space is back.
    """

    def __init__(self, run_dir: str | Path | RunDir, echo: bool = True):
        self.dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run_dir = self.dir.path
        self.summary: RunSummary = load_run(self.dir).summary
        self.echo = echo
        self._fh = open(self.dir.events_file, "a", encoding="utf-8")
        self._last_progress = 0.0

    def emit(self, event: ev.Event) -> None:
        line = event.to_json() + "\n"
        durable = not isinstance(event, ev.Progress)
        start = self._fh.tell()
        try:
            self._fh.write(line)
            self._fh.flush()
            if durable:
                os.fsync(self._fh.fileno())
        except OSError as exc:
            self._drop_partial(start)
            if is_disk_full(exc):
                raise DiskFull(self.run_dir) from exc
            raise
        if self.echo:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.echo = False
        fold(self.summary, event)
        if durable:
            atomic_write_json(self.dir.summary_file, self.summary.to_dict())

    def _drop_partial(self, start: int) -> None:
        """Reopen the events file cut back to ``start`` so no torn line stays behind."""
        try:
            self._fh.close()
        except OSError:
            pass  # the buffered bytes that could not be written are lost here, as they must be
        try:
            os.truncate(self.dir.events_file, start)
        except OSError:
            pass
        self._fh = open(self.dir.events_file, "a", encoding="utf-8")

    def progress(self, event: ev.Progress, force: bool = False, every: float = 1.0) -> None:
        """Throttled progress: at most one event per ``every`` seconds unless forced."""
        now = time.monotonic()
        if force or now - self._last_progress >= every:
            self._last_progress = now
            self.emit(event)

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass
