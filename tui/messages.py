"""Messages that background workers and screens post; small dataclasses, nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

from tui.latency import LatencyRow
from tui.run_tail import RunDetail
from tui.store_watcher import StoreSnapshot
from tui.study_view import StudyView

if TYPE_CHECKING:
    from textual.widget import Widget


@dataclass
class StoreChanged(Message, bubble=False):
    """The run store changed; carries the full latest snapshot (posted to the app, then to each screen)."""

    snapshot: StoreSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreChanged) and message.snapshot.version >= self.snapshot.version


@dataclass
class RunDetailChanged(Message, bubble=False):
    """The open run's detail (curves, log, results) changed."""

    key: str
    detail: RunDetail

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, RunDetailChanged) and message.key == self.key
                and message.detail.version >= self.detail.version)


@dataclass
class ReaderFailed(Message, bubble=False):
    """A background reader hit an unexpected error; it keeps trying."""

    where: str
    error: str


@dataclass
class ActionDone(Message):
    """A store action (start, cancel, resume) finished; ``error`` is empty on success."""

    what: str
    error: str = ""
    path: Path | None = None
    failed: str = ""  # the title of a failure, when "<what> failed" would misread (a grid "started ... failed")


@dataclass
class ChildStarted(Message):
    """A CLI command (export, report) started in a process of its own; its output goes to ``log``."""

    what: str
    log: Path


@dataclass
class LatencyRowsRead(Message, bubble=False):
    """The accuracy-versus-latency rows of every exported run, read from their ``export/summary.json``."""

    rows: list[LatencyRow]


@dataclass
class StudyRead(Message, bubble=False):
    """A study's status, scores and points, read from its folder (``tui.study_view.read``)."""

    view: StudyView

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StudyRead) and message.view.name == self.view.name


@dataclass
class RowHighlighted(Message):
    """The cursor of a runs table moved to another run (None: the table is empty)."""

    table: "Widget"
    key: str | None

    @property
    def control(self) -> "Widget":
        return self.table


@dataclass
class RowSelected(Message):
    """Enter (or a double click) on a run of a runs table."""

    table: "Widget"
    key: str

    @property
    def control(self) -> "Widget":
        return self.table


@dataclass
class HeaderClicked(Message):
    """A column header of a runs table was clicked."""

    table: "Widget"
    column: str

    @property
    def control(self) -> "Widget":
        return self.table
