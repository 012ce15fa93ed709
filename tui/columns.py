"""The runs table's columns as a registry: how each renders, sorts and filters.

A cell is a :class:`Cell`: Rich ``Text`` that also carries the raw value the
column sorts by, so the table can order rows without parsing text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from rich.text import Text

from engine.console import run_seconds
from engine.store.summary import axis_value_text
from tui import format as fmt
from tui.store_watcher import RunState
from tui.theme import Palette


class Cell(Text):
    """Rich text with the value its column sorts by (None sorts last either way)."""

    def __init__(self, text: str = "", style: Any = "", sort: Any = None, justify: str | None = None):
        super().__init__(text, style=style, justify=justify, no_wrap=True, overflow="ellipsis", end="")
        self.sort = sort


@dataclass(frozen=True)
class Context:
    """What rendering needs besides the run: the time now and the theme's colours."""

    now: float
    palette: Palette
    marked: bool = False


@dataclass(frozen=True)
class ColumnInfo:
    """One column of the runs table."""

    key: str
    label: str
    render: Callable[[RunState, Context], Cell]
    width: int | None = None  # None = as wide as the widest cell
    numeric: bool = False
    export: bool = False  # shown only once some run has been exported
    help: str = ""
    descending: bool = False  # sorting by it puts the largest first (accuracies, throughput)
    grids: bool = False  # shown only while runs of more than one grid are on screen
    axes: bool = False  # shown only while some run on screen has axis values
    hosts: bool = False  # shown only while the runs on screen trained on more than one machine (a cluster's nodes)


def _num_cell(value: float | None, text: str, style: Any = "") -> Cell:
    ok = value is not None and isinstance(value, (int, float)) and math.isfinite(value)
    return Cell(text, style=style, sort=value if ok else None, justify="right")


def elapsed_seconds(run: RunState, now: float) -> float | None:
    s = run.summary
    if s.status == "done" and s.total_seconds:  # the worker's own wall time, every epoch's for a resumed run
        return run_seconds(s)
    if s.started_at is None:
        return None
    if s.status == "running" or (run.alive and s.status == "queued"):
        return max(0.0, now - s.started_at)
    end = s.finished_at or s.updated_at
    return max(0.0, end - s.started_at) if end else None


def _status(run: RunState, ctx: Context) -> Cell:
    status = run.status
    order = {"running": 0, "queued": 1, "failed": 2, "unreadable": 3, "cancelled": 4, "done": 5}
    text = f"{status} ✕" if run.cancel_requested else status  # ✕: cancel requested, not acted on yet
    return Cell(text, style=ctx.palette.status(status), sort=order.get(status, 9))


def _note(run: RunState, ctx: Context) -> Cell:
    s = run.summary
    if run.problem:
        text = run.problem.replace(str(run.path) + "/", "")
        return Cell(fmt.one_line(text), style=ctx.palette.error, sort=text)
    if run.status == "failed" and (s.error or s.error_kind):
        text = fmt.failure(s.error_kind, s.error)
        return Cell(text, style=ctx.palette.status(run.status), sort=text)
    if run.status == "cancelled" and s.error:
        return Cell(fmt.one_line(s.error), style=ctx.palette.status(run.status), sort=s.error)
    if run.cancel_requested:
        return Cell("cancel requested", style=ctx.palette.warning, sort="cancel requested")
    if run.status == "running":
        if s.phase and s.steps:
            text = f"{s.phase} {s.step}/{s.steps}"
        else:
            text = s.phase or "starting"
        return Cell(text, style=ctx.palette.muted, sort=text)
    if run.export is not None and run.export.status not in ("ok", ""):
        text = f"export {run.export.status}: {run.export.error or run.export.problem}"
        return Cell(fmt.one_line(text), style=ctx.palette.warning, sort=text)
    return Cell("", sort=None)


def _spark(run: RunState, ctx: Context) -> Cell:
    hist = run.summary.val_acc_history
    return Cell(fmt.sparkline(hist, 10), style=ctx.palette.accent, sort=hist[-1] if hist else None)


def _epoch(run: RunState, ctx: Context) -> Cell:
    s = run.summary
    frac = s.epoch / s.epochs if s.epochs else None
    return Cell(fmt.epoch(s.epoch, s.epochs), sort=frac, justify="right")


def _export_value(run: RunState, name: str) -> float | None:
    return getattr(run.export, name) if run.export is not None else None


def _text(getter: Callable[[RunState], str]) -> Callable[[RunState, Context], Cell]:
    return lambda run, ctx: Cell(getter(run), sort=getter(run))


def _mark(run: RunState, ctx: Context) -> Cell:
    return Cell("●" if ctx.marked else " ", style=ctx.palette.accent, sort=0 if ctx.marked else 1)


COLUMNS: dict[str, ColumnInfo] = {
    c.key: c
    for c in [
        ColumnInfo("mark", " ", _mark, width=1, help="marked for compare (space)"),
        ColumnInfo("grid", "grid", _text(lambda r: r.summary.grid or r.key.split("/")[0]), grids=True),
        ColumnInfo("dataset", "dataset", _text(lambda r: r.summary.dataset or "?")),
        ColumnInfo("backbone", "backbone", _text(lambda r: r.summary.backbone or r.path.name)),
        ColumnInfo("strategy", "strategy", _text(lambda r: r.summary.strategy or "?")),
        ColumnInfo("axes", "axes", _text(lambda r: r.summary.axes_text), axes=True,
                   help="the values of the grid's axes (or search trial) this run takes"),
        ColumnInfo("status", "status", _status, width=10),
        ColumnInfo("host", "host", _text(lambda r: r.summary.host), hosts=True,
                   help="the machine the run trains on (a Ray cluster's node)"),
        ColumnInfo("epoch", "epoch", _epoch, width=5, numeric=True, descending=True),
        ColumnInfo("val_acc", "val acc", lambda r, c: _num_cell(r.summary.val_acc, fmt.pct(r.summary.val_acc)),
                   width=7, numeric=True, help="validation accuracy, last epoch (%)", descending=True),
        ColumnInfo("best_val_acc", "best", lambda r, c: _num_cell(r.summary.best_val_acc, fmt.pct(r.summary.best_val_acc), "bold"),
                   width=5, numeric=True, descending=True,
                   help="validation accuracy of the best epoch (lowest val loss, the kept checkpoint) (%)"),
        ColumnInfo("curve", "val acc curve", _spark, width=13, help="validation accuracy per epoch", descending=True),
        ColumnInfo("test_acc", "test acc", lambda r, c: _num_cell(r.summary.test_accuracy, fmt.pct(r.summary.test_accuracy)),
                   width=8, numeric=True, descending=True),
        ColumnInfo("test_f1", "test F1", lambda r, c: _num_cell(r.summary.test_f1_macro, fmt.pct(r.summary.test_f1_macro)),
                   width=7, numeric=True, help="macro F1 on the test split (%)", descending=True),
        ColumnInfo("latency", "CPU ms", lambda r, c: _num_cell(_export_value(r, "cpu_b1_p50_ms"), fmt.ms(_export_value(r, "cpu_b1_p50_ms"))),
                   width=6, numeric=True, export=True, help="ONNX latency, CPU, batch 1, p50 (ms)"),
        ColumnInfo("onnx_acc", "onnx acc", lambda r, c: _num_cell(_export_value(r, "onnx_accuracy"), fmt.pct(_export_value(r, "onnx_accuracy"))),
                   width=8, numeric=True, export=True, help="ONNX model accuracy on the test split (%)", descending=True),
        ColumnInfo("train_loss", "train loss", lambda r, c: _num_cell(r.summary.train_loss, fmt.num(r.summary.train_loss)),
                   width=10, numeric=True),
        ColumnInfo("train_acc", "train acc", lambda r, c: _num_cell(r.summary.train_acc, fmt.pct(r.summary.train_acc)),
                   width=9, numeric=True, descending=True),
        ColumnInfo("val_loss", "val loss", lambda r, c: _num_cell(r.summary.val_loss, fmt.num(r.summary.val_loss)),
                   width=8, numeric=True),
        ColumnInfo("img_per_s", "img/s", lambda r, c: _num_cell(r.summary.img_per_s, fmt.rate(r.summary.img_per_s)),
                   width=6, numeric=True, help="training throughput", descending=True),
        ColumnInfo("elapsed", "elapsed", lambda r, c: _num_cell(elapsed_seconds(r, c.now), fmt.duration(elapsed_seconds(r, c.now))),
                   width=7, numeric=True),
        ColumnInfo("eta", "ETA", lambda r, c: _num_cell(r.summary.eta_seconds, fmt.duration(r.summary.eta_seconds)),
                   width=6, numeric=True, help="time left at the mean epoch time (early stop may come first)"),
        ColumnInfo("note", "error / note", _note),
    ]
}
IDENTITY = ("mark", "grid", "dataset", "backbone", "strategy")  # stay in view when scrolling sideways


def sort_key(cell: Cell, reverse: bool = False) -> tuple:
    """Missing values last in both directions; numbers and text never compared together."""
    value = cell.sort
    if value is None:
        return (1, 0)
    inner = (1, value.lower()) if isinstance(value, str) else (0, value)
    return (0, Desc(inner) if reverse else inner)


class Desc:
    """Wraps a sort key so it orders descending inside an ascending sort."""

    __slots__ = ("key",)

    def __init__(self, key: tuple):
        self.key = key

    def __lt__(self, other: "Desc") -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Desc) and other.key == self.key


def search_text(run: RunState) -> str:
    """What the filter (``/``) matches against: names, status, grid and error, lower case."""
    s = run.summary
    return " ".join(
        [run.key, s.dataset, s.backbone, s.strategy, run.status, s.grid, s.error, s.error_kind,
         fmt.failure_kind(s.error_kind), run.problem, s.weights, s.axes_text]
    ).lower()


def _axis_texts(run: RunState) -> dict[str, str]:
    return {k: axis_value_text(v) for k, v in run.summary.axes.items()}


def matches(run: RunState, query: str) -> bool:
    """Every space-separated term must occur; ``key:value`` terms match one field exactly-ish
    (``kind:`` is a failed run's kind: user, oom, disk_full, killed, crash; an axis by its name:
    ``lr:0.001``, ``image_size:96``)."""
    text = search_text(run)
    axes = {k.rpartition(".")[2].lower(): str(v) for k, v in _axis_texts(run).items()}
    for term in query.lower().split():
        field_name, sep, value = term.partition(":")
        if sep and field_name in axes:
            if axes[field_name].lower() != value:
                return False
        elif sep and field_name in ("status", "dataset", "backbone", "strategy", "grid", "kind"):
            actual = (run.status if field_name == "status" else run.summary.error_kind if field_name == "kind"
                      else getattr(run.summary, field_name, ""))
            if value not in (actual or "").lower():
                return False
        elif term.startswith("!"):
            if term[1:] and term[1:] in text:
                return False
        elif term not in text:
            return False
    return True
