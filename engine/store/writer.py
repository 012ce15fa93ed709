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
        self._end_torn_tail()
        self.summary: RunSummary = load_run(self.dir).summary
        self.echo = echo
        self._fh = open(self.dir.events_file, "a", encoding="utf-8")
        self.summary.events_offset = self._fh.tell()  # where this writer's events start
        self._last_progress = 0.0

    def _end_torn_tail(self) -> None:
        """Make events.jsonl end on a complete line before appending to it.

        A writer killed mid-line leaves a tail without its newline; appending after it would glue the
        next event onto it and lose both. A tail that is a whole event gets its newline; anything else
        is half an event that never counted and is cut away.
        """
        try:
            with open(self.dir.events_file, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - 65536))
                data = fh.read()
        except FileNotFoundError:
            return
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        try:
            whole = ev.decode_event(tail) is not None
        except ev.BadEvent:
            whole = False
        try:
            if whole:
                with open(self.dir.events_file, "ab") as fh:
                    fh.write(b"\n")
            elif cut or size <= len(data):
                os.truncate(self.dir.events_file, size - len(tail))
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.run_dir) from exc
            raise

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
        self.summary.events_offset = start + len(line.encode("utf-8"))
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
