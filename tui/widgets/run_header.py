"""Two lines on top of the detail screen: which run, where it stands, where it lives."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui import format as fmt
from tui.columns import elapsed_seconds
from tui.store_watcher import RunState
from tui.theme import Palette


def header_text(run: RunState, now: float, palette: Palette) -> Text:
    s = run.summary
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{s.dataset or '?'} / {s.backbone or '?'} / {s.strategy or '?'}", style="bold")
    text.append("  ")
    text.append(run.status, style=palette.status(run.status))
    text.append(f"  epoch {fmt.epoch(s.epoch, s.epochs)}")
    if run.status == "running" and s.phase and s.steps:
        text.append(f" ({s.phase} {s.step}/{s.steps})", style=palette.muted)
    if s.test_accuracy is not None:
        text.append(f"  test {fmt.pct(s.test_accuracy)}% F1 {fmt.pct(s.test_f1_macro)}%", style="bold")
    text.append(f"  {fmt.duration(elapsed_seconds(run, now))}")
    if s.eta_seconds is not None:
        text.append(f"  ETA {fmt.duration(s.eta_seconds)}")
    if s.best_val_acc is not None:  # the kept epoch (lowest val loss) and its val accuracy
        text.append(f"  best epoch {s.best_epoch or '?'}: val {fmt.pct(s.best_val_acc)}%")
    text.append("\n")
    line2 = [run.key]
    if s.device:
        line2.append(s.device)
    if s.weights:
        line2.append(s.weights)
    text.append("  ".join(line2), style=palette.muted)
    if run.problem:
        text.append("\n")
        text.append(fmt.one_line(run.problem.replace(str(run.path) + "/", "")), style=palette.error)
    elif run.status == "failed":
        kind = f" ({fmt.failure_kind(s.error_kind)})" if s.error_kind else ""
        text.append("\n")
        text.append(f"failed{kind}: {fmt.one_line(s.error)}", style=palette.status(run.status))
    elif run.status == "cancelled" and s.error:
        text.append("\n")
        text.append(fmt.one_line(s.error), style=palette.status(run.status))
    notes = [] if run.problem else s.notes  # skipped events, a refused checkpoint
    if notes:
        text.append("  " if text.plain.count("\n") == 2 else "\n")
        text.append("; ".join(fmt.one_line(n) for n in notes), style=palette.warning)
    return text


class RunHeader(Static):
    """Headline of the open run."""

    def show(self, run: RunState | None, now: float, palette: Palette) -> None:
        self.update(header_text(run, now, palette) if run is not None else "run not found in the store")
