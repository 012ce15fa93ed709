"""One line under the runs table about the highlighted run: its error, progress or result."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui import format as fmt
from tui.store_watcher import RunState
from tui.theme import Palette


def describe(run: RunState, palette: Palette) -> Text:
    """A one-line account of a run, its error first when it has one."""
    s = run.summary
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{run.key} ", style="bold")
    status = run.status
    text.append(status, style=palette.status(status))
    if run.problem:
        text.append(": " + fmt.one_line(run.problem.replace(str(run.path) + "/", "")), style=palette.error)
    elif status == "failed":
        kind = f" ({fmt.failure_kind(s.error_kind)})" if s.error_kind else ""
        text.append(f"{kind}: {fmt.one_line(s.error)}", style=palette.error)
    elif status == "cancelled":
        text.append(f": {fmt.one_line(s.error) or 'cancelled'}", style=palette.warning)
    elif run.cancel_requested:  # a queued run has no worker yet: its grid skips it
        wait = "it will not start" if status == "queued" else "waiting for the worker to stop"
        text.append(f": cancel requested, {wait}", style=palette.warning)
    elif status == "running":
        parts = [f"epoch {fmt.epoch(s.epoch, s.epochs)}"]
        if s.phase and s.steps:
            parts.append(f"{s.phase} {s.step}/{s.steps}")
        if s.device:
            parts.append(s.device)
        if s.eta_seconds is not None:
            parts.append(f"ETA {fmt.duration(s.eta_seconds)}")
        text.append("  " + ", ".join(parts))
    elif status == "done":
        text.append(f"  test acc {fmt.pct(s.test_accuracy)}%, F1 {fmt.pct(s.test_f1_macro)}%, best epoch {s.best_epoch}")
        if run.export is not None and run.export.cpu_b1_p50_ms is not None:
            text.append(f", ONNX {fmt.ms(run.export.cpu_b1_p50_ms)} ms")
    notes = [] if run.problem else s.notes  # skipped events, a refused checkpoint
    if notes:
        more = f" (+{len(notes) - 1} more)" if len(notes) > 1 else ""
        text.append(f"  ! {fmt.one_line(notes[0])}{more}", style=palette.warning)
    if s.weights and not run.problem:
        text.append(f"  {s.weights}", style=palette.muted)
    return text


class RunLine(Static):
    """The highlighted run, in one line."""

    def show(self, run: RunState | None, palette: Palette) -> None:
        self.update(describe(run, palette) if run is not None else "", layout=False)  # one line, always
