"""Compare marked runs: metrics side by side, curves overlaid, winners per dataset."""

from __future__ import annotations

import threading

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from tui.compare import run_label, winners
from tui.messages import ReaderFailed, RunDetailChanged, StoreChanged
from tui.run_tail import RunDetail, RunTail
from tui.store_watcher import RunState
from tui.theme import Palette
from tui.widgets.compare_table import CompareTable
from tui.widgets.curves import CurvesPlot, Series
from tui.widgets.winners_table import WinnersTable

CURVES = {  # metric key -> (title, value of an epoch)
    "val_acc": ("validation accuracy %", lambda e: e.val_acc * 100),
    "val_loss": ("validation loss", lambda e: e.val_loss),
    "train_acc": ("training accuracy %", lambda e: e.train_acc * 100),
    "train_loss": ("training loss", lambda e: e.train_loss),
    "lr": ("learning rate (head)", lambda e: e.lr),
}


class CompareScreen(Screen):
    """Runs side by side."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back", key_display="esc", id="compare.back"),
        Binding("1", "tab('metrics')", "Metrics", id="compare.metrics"),
        Binding("2", "tab('curves')", "Curves", id="compare.curves"),
        Binding("3", "tab('winners')", "Winners", id="compare.winners"),
        Binding("m", "next_curve", "Curve metric", id="compare.curve_metric"),
    ]

    def __init__(self, keys: list[str]) -> None:
        super().__init__()
        self.keys = list(keys)
        self.details: dict[str, RunDetail] = {}
        self.curve = "val_acc"
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static(id="compare-title")
        with TabbedContent(id="compare-tabs", initial="metrics"):
            with TabPane("Metrics", id="metrics"):
                yield CompareTable(id="compare-table")
            with TabPane("Curves", id="curves"):
                yield CurvesPlot(CURVES[self.curve][0], id="compare-plot")
            with TabPane("Winners", id="winners"):
                yield WinnersTable(id="winners-table")
        yield Footer(compact=True)

    @property
    def palette(self) -> Palette:
        return Palette.from_app(self.app)

    def runs(self) -> list[RunState]:
        snapshot = self.app.snapshot
        if snapshot is None:
            return []
        return [snapshot.runs[k] for k in self.keys if k in snapshot.runs]

    def on_mount(self) -> None:
        self.query_one(TabbedContent).query_one("Tabs").can_focus = False
        self.query_one(CompareTable).focus()
        self._show()
        self.follow([r.path for r in self.runs()], [r.key for r in self.runs()])

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exit_on_error=False, group="compare", exclusive=True)
    def follow(self, paths: list, keys: list[str]) -> None:
        """Tail every compared run (for curves and results) until the screen closes."""
        worker = get_current_worker()
        tails = {k: RunTail(p) for k, p in zip(keys, paths)}
        while not (worker.is_cancelled or self._stop.is_set()):
            for key, tail in tails.items():
                try:
                    detail = tail.poll()
                except Exception as exc:  # never freeze the screen on a reader bug
                    self.app.post_message(ReaderFailed("run reader", f"{type(exc).__name__}: {exc}"))
                    tails[key], detail = RunTail(tail.path), None
                    self._stop.wait(2.0)
                if detail is not None:
                    self.post_message(RunDetailChanged(key, detail))
            self._stop.wait(self.app.poll_interval)

    @on(RunDetailChanged)
    def _detail_changed(self, message: RunDetailChanged) -> None:
        self.details[message.key] = message.detail
        self._show()

    @on(StoreChanged)
    def _store_changed(self) -> None:
        self._show()

    def _show(self) -> None:
        runs = self.runs()
        palette = self.palette
        self.query_one("#compare-title", Static).update(f"comparing {len(runs)} runs: " + ", ".join(run_label(r) for r in runs))
        results = {k: d.results for k, d in self.details.items()}
        self.query_one(CompareTable).show(runs, results, palette)
        self._show_curves(runs)
        snapshot = self.app.snapshot
        grids = sorted({r.key.split("/")[0] for r in runs})
        grid_runs = [r for k, r in (snapshot.runs.items() if snapshot else []) if k.split("/")[0] in grids]
        self.query_one(WinnersTable).show(winners(runs), winners(grid_runs), "grid " + ", ".join(grids), palette)

    def _show_curves(self, runs: list[RunState]) -> None:
        title, get = CURVES[self.curve]
        with_dataset = len({r.summary.dataset for r in runs}) > 1
        series = []
        for run in runs:
            detail = self.details.get(run.key)
            eps = detail.epochs if detail else ()
            series.append(Series(run_label(run, with_dataset), tuple(float(e.epoch) for e in eps), tuple(get(e) for e in eps)))
        self.query_one(CurvesPlot).show(series, title=f"{title}   (m: next metric)")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_next_curve(self) -> None:
        names = list(CURVES)
        self.curve = names[(names.index(self.curve) + 1) % len(names)]
        self.query_one(TabbedContent).active = "curves"
        self._show_curves(self.runs())
