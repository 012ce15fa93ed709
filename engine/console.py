"""Headless progress for ``finetune-tui run``: a Rich live table on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine import events as ev
from engine.store import RunSummary, fold

STATUS_STYLE = {"queued": "dim", "running": "cyan", "done": "green", "failed": "red", "cancelled": "yellow"}


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


class ProgressView:
    """Receives (run_id, event) from the orchestrator's reader threads."""

    def __init__(self, summaries: dict[str, RunSummary], console: Console | None = None, plain: bool | None = None):
        self.summaries = summaries
        self.console = console or Console()
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._t0 = time.monotonic()

    def __enter__(self):
        if not self.plain:
            self._live = Live(self.table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(*exc)

    def __call__(self, run_id: str, event: ev.Event) -> None:
        with self._lock:
            summary = self.summaries.setdefault(run_id, RunSummary(run_id=run_id))
            fold(summary, event)
            if self.plain:
                line = self.line(run_id, event)
                if line:
                    print(line, flush=True)
            elif self._live is not None:
                self._live.update(self.table())

    def line(self, run_id: str, event: ev.Event) -> str:
        stamp = f"[{time.monotonic() - self._t0:7.1f}s] {run_id}"
        if isinstance(event, ev.Started):
            return f"{stamp} started on {event.device} ({event.weights.get('description', '')})"
        if isinstance(event, ev.Epoch):
            return (f"{stamp} epoch {event.epoch}/{event.epochs} train_loss {event.train_loss:.4f} "
                    f"train_acc {event.train_acc:.4f} val_loss {event.val_loss:.4f} val_acc {event.val_acc:.4f} "
                    f"lr {event.lr:.1e} {event.img_per_s:.0f} img/s{' *best' if event.is_best else ''}")
        if isinstance(event, ev.EarlyStop):
            return f"{stamp} early stop at epoch {event.epoch} (best {event.best_epoch})"
        if isinstance(event, ev.Finished):
            return (f"{stamp} done: test acc {event.test.get('accuracy', 0):.4f} "
                    f"F1 {event.test.get('f1_macro', 0):.4f} in {event.train_seconds:.0f}s")
        if isinstance(event, ev.Failed):
            return f"{stamp} FAILED: {event.error}"
        if isinstance(event, ev.Cancelled):
            return f"{stamp} cancelled: {event.reason}"
        return ""

    def table(self) -> Table:
        t = Table(title="finetune-tui run", expand=False)
        for col in ("run", "status", "epoch", "progress", "train loss", "val acc", "best val", "test acc", "F1", "img/s"):
            t.add_column(col, no_wrap=True)
        for rid, s in self.summaries.items():
            progress = f"{s.phase} {s.step}/{s.steps}" if s.status == "running" and s.steps else ""
            status = Text(s.status, style=STATUS_STYLE.get(s.status, "magenta"))
            if s.status == "failed" and s.error:
                status.append(" " + s.error[:60], style="red")
            t.add_row(rid, status, f"{s.epoch}/{s.epochs}", progress, _pct(s.train_loss), _pct(s.val_acc),
                      _pct(s.best_val_acc), _pct(s.test_accuracy), _pct(s.test_f1_macro),
                      "" if s.img_per_s is None else f"{s.img_per_s:.0f}")
        return t


def runs_table(records, title: str = "runs") -> Group:
    """`finetune-tui runs`: one table per grid, every run with status and metrics, then one line per
    failure or problem. Names are never wrapped: at 80 columns the seed's longest (efficientnet_lite0,
    discriminative) fit whole, since cells are one space apart and the figures take 5 columns each."""
    by_grid: dict[str, list] = {}
    for rec in records:
        by_grid.setdefault(rec.summary.grid, []).append(rec)
    tables, notes = [], []
    for grid, recs in by_grid.items():
        # the box's one-space divider between cells and no padding or outer edge: names get the width
        t = Table(title=f"{title}, grid {grid}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=0, title_justify="left")
        for col in ("dataset", "backbone", "strategy", "status"):
            t.add_column(col, no_wrap=True, overflow="ellipsis")
        for col in ("epoch", "val", "test", "F1"):
            t.add_column(col, no_wrap=True, justify="right")
        for rec in recs:
            s = rec.summary
            t.add_row(s.dataset or rec.run_id, s.backbone, s.strategy,
                      Text(s.status, style=STATUS_STYLE.get(s.status, "magenta")), f"{s.epoch}/{s.epochs}",
                      _pct(s.best_val_acc), _pct(s.test_accuracy), _pct(s.test_f1_macro))
            note = rec.problem or s.error
            if note:  # Text, not markup: errors may hold brackets
                kind = f"{s.status} ({s.error_kind.replace('_', ' ')}): " if s.error_kind and not rec.problem else ""
                notes.append(Text.assemble((f"{s.grid}/{rec.run_id}: ", "bold"), (kind + note, "red")))
        tables.append(t)
    return Group(*tables, *notes)


def is_terminal() -> bool:
    return sys.stdout.isatty()
