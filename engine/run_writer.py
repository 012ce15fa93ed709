"""The worker's side of the store: append events, keep summary.json current."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from engine import events as ev
from engine.store import RunSummary, atomic_write_json, fold, load_run


class RunWriter:
    """Append each event to events.jsonl (flushed), echo it to stdout, fold it into summary.json.

    stdout is best effort: if the parent (orchestrator) died, the pipe is gone
    and the run carries on, writing to its folder only.
    """

    def __init__(self, run_dir: str | Path, echo: bool = True):
        self.run_dir = Path(run_dir)
        self.summary: RunSummary = load_run(self.run_dir).summary
        self.echo = echo
        self._fh = open(self.run_dir / "events.jsonl", "a", encoding="utf-8")
        self._last_progress = 0.0

    def emit(self, event: ev.Event) -> None:
        line = event.to_json() + "\n"
        self._fh.write(line)
        self._fh.flush()
        if not isinstance(event, ev.Progress):
            os.fsync(self._fh.fileno())
        if self.echo:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.echo = False
        fold(self.summary, event)
        if not isinstance(event, ev.Progress):
            atomic_write_json(self.run_dir / "summary.json", self.summary.to_dict())

    def progress(self, event: ev.Progress, force: bool = False, every: float = 1.0) -> None:
        """Throttled progress: at most one event per ``every`` seconds unless forced."""
        now = time.monotonic()
        if force or now - self._last_progress >= every:
            self._last_progress = now
            self.emit(event)

    def close(self) -> None:
        self._fh.close()
