"""Accuracy versus latency per dataset: every exported model, the ones nothing beats marked ★."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tui import format as fmt
from tui.latency import LatencyRow, latency_rows
from tui.messages import LatencyRowsRead, StoreChanged

COLUMNS = (("mark", ""), ("dataset", "dataset"), ("run", "run"), ("test_acc", "test acc"), ("onnx_acc", "onnx acc"),
           ("p50", "b1 p50 ms"), ("provider", "provider"), ("size", "size MB"), ("pareto", "pareto"),
           ("status", "export"))
EMPTY = "No run has export results yet. On the runs screen, highlight a run and press [b]e[/b] to export its grid's best model per dataset."


def cells(row: LatencyRow) -> tuple[str, ...]:
    """The table cells of one row, in COLUMNS order."""
    return ("★" if row.pareto else "", row.dataset, row.key, fmt.pct(row.test_acc), fmt.pct(row.onnx_acc),
            fmt.ms(row.p50_ms), row.provider.removesuffix("ExecutionProvider") or fmt.MISSING,
            fmt.MISSING if row.size_mb is None else f"{row.size_mb:.1f}", "yes" if row.pareto else "no", row.status)


class LatencyScreen(Screen):
    """Per dataset: test and ONNX accuracy, batch-1 median latency and size of every exported model."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back", key_display="esc", id="latency.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._seen: object = None  # which exports the rows were read for

    def compose(self) -> ComposeResult:
        yield Static("accuracy vs latency per dataset (★ = no other model of the dataset is both more accurate "
                     "and faster)", id="latency-title")
        yield Static(EMPTY, id="latency-empty")
        yield DataTable(id="latency-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#latency-empty").display = False
        table.focus()
        self._reload()

    @on(StoreChanged)
    def _store_changed(self) -> None:
        self._reload()

    def _reload(self) -> None:
        snapshot = self.app.snapshot
        runs = [r for r in (snapshot.runs.values() if snapshot else []) if r.export is not None]
        seen = tuple((r.key, r.export, r.summary.test_accuracy) for r in runs)
        if seen != self._seen:
            self._seen = seen
            self.read_rows(runs)

    @work(thread=True, exit_on_error=False, group="latency", exclusive=True)
    def read_rows(self, runs: list) -> None:
        """Read the runs' export summaries off the UI thread."""
        self.post_message(LatencyRowsRead(latency_rows(runs)))

    @on(LatencyRowsRead)
    def _rows_read(self, message: LatencyRowsRead) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for row in message.rows:
            table.add_row(*cells(row), key=row.key)
        table.display = bool(message.rows)
        self.query_one("#latency-empty").display = not message.rows

    def action_back(self) -> None:
        self.app.pop_screen()
