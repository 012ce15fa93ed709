"""The run's log tail: its log events and notable events, then the worker's stderr tail."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from engine.store import RunDir
from tui.run_tail import RunDetail
from tui.theme import Palette


def log_text(detail: RunDetail, palette: Palette, limit: int = 60) -> Text:
    text = Text()
    styles = {"warning": palette.warning, "error": palette.error}
    for line in detail.logs[-limit:]:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
        text.append(f"{stamp} ", style=palette.muted)
        text.append(f"{line.message}\n", style=styles.get(line.level, ""))
    if not detail.logs:
        text.append("no events yet\n", style=palette.muted)
    if detail.worker_log:
        text.append(f"\n{RunDir.WORKER_LOG} (last lines)\n", style="bold")
        for raw in detail.worker_log:
            text.append(raw + "\n", style=palette.muted)
    return text


class LogView(Static):
    """Log tail of the open run (local times)."""

    def show(self, detail: RunDetail, palette: Palette) -> None:
        self.update(log_text(detail, palette))
