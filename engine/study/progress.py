"""A study's progress: status.json kept current (the TUI reads it), lines for the console, cancel checks."""

from __future__ import annotations

import time
from typing import Callable

from engine.errors import UserError
from engine.store import StudyDir, StudyStatus

WRITE_EVERY = 0.5  # seconds between status.json writes within a stage; stage changes write at once
CANCEL_EVERY = 0.5  # seconds between looks for a cancel request


class Cancelled(Exception):
    """A cancel request (cancel file, SIGTERM, Ctrl-C) reached the study."""


class StudyBusy(UserError):
    """Another process runs the study."""


Echo = Callable[[str, StudyStatus], None]  # (line or "" for a step update, the status now)


class Progress:
    """Owns the study's StudyStatus while it runs: stages, steps, notes, the final outcome."""

    def __init__(self, sdir: StudyDir, status: StudyStatus, echo: Echo | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.sdir, self.status, self.echo, self.clock = sdir, status, echo, clock
        self._written = self._checked = -1e9

    def _write(self, force: bool) -> None:
        now = self.clock()
        if force or now - self._written >= WRITE_EVERY:
            self._written = now
            self.sdir.write_status(self.status)

    def check_cancel(self) -> None:
        now = self.clock()
        if now - self._checked >= CANCEL_EVERY:
            self._checked = now
            reason = self.sdir.cancel_reason()
            if reason:
                raise Cancelled(reason)

    def stage(self, text: str, steps: int = 0, current: str | None = None) -> None:
        """A new stage of the current cell (or of the study): written and told at once."""
        st = self.status
        st.stage, st.step, st.steps, st.message = text, 0, steps, text
        if current is not None:
            st.current = current
        self._write(force=True)
        if self.echo:
            self.echo(f"{st.current + ': ' if st.current else ''}{text}", st)
        self.check_cancel()

    def step(self, done: int, steps: int) -> None:
        """Progress within the stage (images or batches); throttled; raises Cancelled when asked to stop."""
        self.status.step, self.status.steps = done, steps
        self._write(force=done >= steps)
        if self.echo:
            self.echo("", self.status)
        self.check_cancel()

    def note(self, line: str) -> None:
        """A line worth keeping (a skipped extractor, a figure that failed): in status.notes and on the console."""
        if line not in self.status.notes:
            self.status.notes.append(line)
        self._write(force=True)
        if self.echo:
            self.echo(line, self.status)

    def cell_done(self, message: str) -> None:
        self.status.done += 1
        self.status.message = message
        self._write(force=True)
        if self.echo:
            self.echo(message, self.status)

    def end(self, status: str, error: str = "", message: str = "") -> None:
        st = self.status
        st.status, st.error, st.finished = status, error, time.time()
        st.stage, st.step, st.steps, st.current = status, 0, 0, ""
        st.message = message or error or status
        self.sdir.write_status(st)
        if self.echo:
            self.echo(st.message, st)
