"""Metrics of the compared runs side by side, the best value of each row highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from tui.compare import best_indices, metrics_for, run_label
from tui.store_watcher import RunState
from tui.theme import Palette


class CompareTable(DataTable):
    """One row per metric, one column per run."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("h", "cursor_left", "Left", show=False),
        Binding("l", "cursor_right", "Right", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="cell", zebra_stripes=True, header_height=3)
        self.best: dict[str, set[str]] = {}  # metric key -> run keys holding its best value

    def show(self, runs: list[RunState], results: dict[str, dict | None], palette: Palette) -> None:
        keep = self.cursor_coordinate
        self.clear(columns=True)
        rows = metrics_for(runs)
        self.add_column("metric", key="metric", width=max(len(m.label) for m in rows))
        datasets = {r.summary.dataset for r in runs}
        for run in runs:
            s = run.summary
            parts = ([s.dataset] if len(datasets) > 1 else []) + [s.backbone, s.strategy]
            width = max(8, *(len(p) for p in parts))  # long values (weights) are cut, not widening the column
            self.add_column(Text("\n".join(parts), justify="right"), key=run.key, width=width)
        self.fixed_columns = 1
        self.best = {}
        best_style = palette.best()
        for metric in rows:
            values = [metric.value(r, results.get(r.key)) for r in runs]
            winners = best_indices(values, metric.better)
            self.best[metric.key] = {runs[i].key for i in winners}
            cells = []
            for i, value in enumerate(values):
                text = metric.text(value) if value is not None else "–"
                cells.append(Text(text + (" *" if i in winners and palette.plain else ""),
                                  style=best_style if i in winners else "", justify="right",
                                  no_wrap=True, overflow="ellipsis"))
            self.add_row(Text(metric.label, style="bold"), *cells, key=metric.key)
        if self.row_count:
            self.move_cursor(row=min(keep.row, self.row_count - 1), column=min(keep.column, len(runs)))

    def title_for(self, runs: list[RunState]) -> str:
        return ", ".join(run_label(r) for r in runs)
