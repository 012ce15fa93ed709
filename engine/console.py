"""Headless progress for ``finetune-tui run``: a Rich live table on a terminal, plain lines otherwise."""

from __future__ import annotations

import math
import sys
import threading
import time

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from engine import events as ev
from engine.store import GridDir, RunSummary, fold
from engine.store.summary import axis_value_text

STATUS_STYLE = {"queued": "dim", "running": "cyan", "done": "green", "failed": "red", "cancelled": "yellow"}


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def duration(seconds: float | None) -> str:
    """``"47s"``, ``"3m05s"``, ``"1h02m"``; "" when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def run_seconds(s: RunSummary) -> float | None:
    """A finished run's total wall time (its worker's, start to end); older runs only recorded training.

    A resumed run's last worker ran only its last part; its training seconds count every epoch, so the
    larger of the two is shown (a run cancelled at epoch 34 of 40 and resumed said 6 s beside 42 s of training).
    """
    if not s.total_seconds:
        return s.train_seconds
    return max(s.total_seconds, s.train_seconds or 0.0)


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
            total = event.total_seconds or event.train_seconds
            phases = ", ".join(f"{k} {v:.0f}s" for k, v in event.phases.items() if v >= 0.5)
            return (f"{stamp} done: test acc {event.test.get('accuracy', 0):.4f} "
                    f"F1 {event.test.get('f1_macro', 0):.4f} in {total:.0f}s" + (f" ({phases})" if phases else ""))
        if isinstance(event, ev.Progress) and event.phase in ("decode", "decode-wait") and event.steps \
                and event.step >= event.steps:
            what = "decoded" if event.phase == "decode" else "another run decoded"
            return f"{stamp} {what} {event.steps} images into the dataset cache"
        if isinstance(event, ev.Failed):
            return f"{stamp} FAILED: {event.error}"
        if isinstance(event, ev.Cancelled):
            return f"{stamp} cancelled: {event.reason}"
        if isinstance(event, ev.Queued):
            return f"{stamp} queued: {event.reason}"
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


def runs_table(records, title: str = "runs", group_by: str = "") -> Group:
    """`finetune-tui runs`: one table per grid, every run with status and metrics, then one line per
    failure or problem. Names are never wrapped: at 80 columns the seed's longest (efficientnet_lite0,
    discriminative) fit whole, since cells are one space apart and the figures take 5 columns each.

    Runs with axis values get a column per axis; ``group_by`` (an axis key or its last part, or dataset,
    backbone, strategy) orders the runs by it and adds a table of each value's runs: how many finished, the
    mean and best of their best-epoch val accuracy and test accuracy.
    """
    if group_by:
        records = sorted(records, key=lambda rec: _group_value(rec.summary, group_by))
    by_grid: dict[str, list] = {}
    for rec in records:
        by_grid.setdefault(rec.summary.grid, []).append(rec)
    tables, notes = [], []
    for grid, recs in by_grid.items():
        axes = list(dict.fromkeys(k for rec in recs for k in rec.summary.axes))
        timed = any(rec.summary.status == "done" for rec in recs)
        # a grid that trained on several machines (a cluster's nodes) says where; the time column goes first when narrow
        hosted = len({rec.summary.host for rec in recs if rec.summary.host}) > 1
        layouts = [(t, h) for t in ((True, False) if timed else (False,)) for h in ((True,) if hosted else (False,))]
        if hosted:
            layouts.append((False, False))
        tables.append(_Widest(*[_grid_table(f"{title}, grid {grid}", recs, axes, with_time, with_host)
                                for with_time, with_host in layouts]))
        orphan = GridDir(recs[0].path.parent).orphan_problem()
        if orphan:
            notes.append(Text.assemble((f"{grid}: ", "bold"), (orphan, "yellow")))
        for rec in recs:
            s = rec.summary
            note = rec.problem or s.error
            if note:  # Text, not markup: errors may hold brackets
                kind = f"{s.status} ({s.error_kind.replace('_', ' ')}): " if s.error_kind and not rec.problem else ""
                notes.append(Text.assemble((f"{s.grid}/{rec.run_id}: ", "bold"), (kind + note, "red")))
            for line in [] if rec.problem else s.notes:  # skipped or lost events, a refused checkpoint
                notes.append(Text.assemble((f"{s.grid}/{rec.run_id}: ", "bold"), (line, "yellow")))
    if group_by:
        return Group(*tables, *notes, group_table(records, group_by))
    return Group(*tables, *notes)


def _grid_table(title: str, recs: list, axes: list[str], with_time: bool, with_host: bool = False) -> Table:
    # the box's one-space divider between cells and no padding or outer edge: names get the width
    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0, title_justify="left")
    for col in ("dataset", "backbone", "strategy"):
        t.add_column(col, no_wrap=True, overflow="ellipsis")
    for key in axes:
        t.add_column(key.rpartition(".")[2], no_wrap=True, justify="right")
    t.add_column("status", no_wrap=True, overflow="ellipsis")
    if with_host:
        t.add_column("host", no_wrap=True, overflow="ellipsis", max_width=24)
    for col in ("epoch", "val", "test", "F1", *(("time",) if with_time else ())):
        t.add_column(col, no_wrap=True, justify="right")
    for rec in recs:
        s = rec.summary
        t.add_row(s.dataset or rec.run_id, s.backbone, s.strategy,
                  *[axis_value_text(s.axes[k]) if k in s.axes else "" for k in axes],
                  Text(s.status, style=STATUS_STYLE.get(s.status, "magenta")), *((s.host,) if with_host else ()),
                  f"{s.epoch}/{s.epochs}",
                  _pct(s.best_val_acc), _pct(s.test_accuracy), _pct(s.test_f1_macro),
                  *((duration(run_seconds(s)) if s.status == "done" else "",) if with_time else ()))
    return t


class _Widest:
    """The first of ``choices`` whose natural width fits the console; else the last (names stay whole on a
    narrow terminal: the run time column is the first to go, then the host column)."""

    def __init__(self, *choices):
        self.choices = choices

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for choice in self.choices[:-1]:
            # measured unbounded: Rich clamps a measurement to the width it is given
            if Measurement.get(console, options.update(max_width=10_000), choice).maximum <= options.max_width:
                yield choice
                return
        yield self.choices[-1]


GROUP_NAMES = ("dataset", "backbone", "strategy", "grid")


def group_keys(records) -> set[str]:
    """What ``runs_table(group_by=...)`` can group these runs by: the names, each axis key and its last part."""
    return set(GROUP_NAMES) | {k for rec in records for a in rec.summary.axes for k in (a, a.rpartition(".")[2])}


def _group_value(summary: RunSummary, key: str) -> tuple:
    if key in GROUP_NAMES:
        return (0, getattr(summary, key))
    for k, v in summary.axes.items():
        if key in (k, k.rpartition(".")[2]):
            return (0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v))
    return (2, "")


def group_table(records, key: str) -> Table:
    """One row per value of ``key``: runs, done, mean and best best-epoch val accuracy and test accuracy."""
    groups: dict[tuple, list[RunSummary]] = {}
    for rec in records:
        groups.setdefault(_group_value(rec.summary, key), []).append(rec.summary)
    t = Table(title=f"by {key}", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for col in (key, "runs", "done", "val mean", "val best", "test mean", "test best"):
        t.add_column(col, justify="left" if col == key else "right", no_wrap=True)

    def stats(values):
        values = [v for v in values if v is not None]
        return (_pct(sum(values) / len(values)), _pct(max(values))) if values else ("", "")

    for (rank, value), members in groups.items():
        label = "(none)" if rank == 2 else axis_value_text(value)
        done = [m for m in members if m.status == "done"]
        t.add_row(label, str(len(members)), str(len(done)), *stats([m.best_val_acc for m in members]),
                  *stats([m.test_accuracy for m in done]))
    return t


def is_terminal() -> bool:
    return sys.stdout.isatty()
