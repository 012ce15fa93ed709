"""One run in depth: live curves, which layers learn, test results, config and log."""

from __future__ import annotations

import math
import threading

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import get_current_worker

from engine.lr_find import plot_ceiling
from tui import format as fmt
from tui.messages import ReaderFailed, RunDetailChanged, StoreChanged
from tui.run_tail import RunDetail, RunTail
from tui.store_watcher import RunState
from tui.theme import Palette
from tui.widgets.class_report import ClassReport
from tui.widgets.config_view import ConfigView
from tui.widgets.confusion import ConfusionMatrix
from tui.widgets.curves import CurvesPlot, Series
from tui.widgets.log_view import LogView
from tui.widgets.norms import LayerNorms
from tui.widgets.run_header import RunHeader
from tui.widgets.top_errors import TopErrors

TABS = ("curves", "layers", "results", "config", "log")


def curve_series(detail: RunDetail) -> dict[str, list[Series]]:
    """The detail screen's three plots: loss, accuracy (%), learning rate."""
    eps = detail.epochs
    x = tuple(float(e.epoch) for e in eps)
    return {
        "loss": [Series("train", x, tuple(e.train_loss for e in eps)), Series("val", x, tuple(e.val_loss for e in eps))],
        "acc": [Series("train", x, tuple(e.train_acc * 100 for e in eps)),
                Series("val", x, tuple(e.val_acc * 100 for e in eps))],
        "lr": [Series("head lr", x, tuple(e.lr for e in eps))],
    }


def lr_find_series(detail: RunDetail) -> list[Series]:
    """The LR range test's smoothed loss against log10(lr), and where it chose (empty without a test)."""
    curve = detail.lr_find or {}
    lrs, losses = curve.get("lrs") or [], curve.get("losses") or []
    if not lrs or len(lrs) != len(losses) or not all(isinstance(v, (int, float)) and v > 0 for v in lrs):
        return []
    # the points past the plot's ceiling are the divergence: kept, they would squash the valley to a line
    top = plot_ceiling(losses)
    kept = [i for i, v in enumerate(losses) if v <= top]
    x = tuple(math.log10(lrs[i]) for i in kept)
    out = [Series("smoothed loss", x, tuple(losses[i] for i in kept))]
    chosen = curve.get("suggestion")
    if isinstance(chosen, (int, float)) and chosen > 0:
        at = min(kept, key=lambda i: abs(math.log10(lrs[i] / chosen)))
        out.append(Series(f"chosen {chosen:.2g}", (math.log10(lrs[at]),) * 2, (min(losses), losses[at])))
    return out


class DetailScreen(Screen):
    """Detail of one run, followed live by its own reader thread."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back", key_display="esc", id="detail.back"),
        Binding("1", "tab('curves')", "Curves", id="detail.curves"),
        Binding("2", "tab('layers')", "Layers", id="detail.layers"),
        Binding("3", "tab('results')", "Results", id="detail.results"),
        Binding("4", "tab('config')", "Config", id="detail.config"),
        Binding("5", "tab('log')", "Log", id="detail.log"),
        Binding("left,h", "cycle(-1)", "Previous tab", show=False),
        Binding("right,l", "cycle(1)", "Next tab", show=False),
        Binding("j,down", "scroll(1)", "Down", show=False),
        Binding("k,up", "scroll(-1)", "Up", show=False),
        Binding("x", "cancel_run", "Cancel run", id="detail.cancel_run"),
        Binding("p", "path", "Path", id="detail.path"),
    ]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.detail: RunDetail | None = None
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with TabbedContent(id="tabs", initial="curves"):
            with TabPane("Curves", id="curves"):
                with Horizontal(id="curves-top"):
                    yield CurvesPlot("loss", id="plot-loss")
                    yield CurvesPlot("accuracy %", id="plot-acc")
                with Horizontal(id="curves-bottom"):
                    yield CurvesPlot("learning rate (head)", id="plot-lr")
                    yield CurvesPlot("LR range test: loss vs log10(lr)", id="plot-lrfind")
            with TabPane("Layers", id="layers"):
                with VerticalScroll():
                    yield LayerNorms(id="norms")
            with TabPane("Results", id="results"):
                with VerticalScroll():
                    with Horizontal(id="results-top"):
                        yield ClassReport(id="class-report")
                        yield ConfusionMatrix(id="confusion")
                    yield TopErrors(id="top-errors")
            with TabPane("Config", id="config"):
                with VerticalScroll():
                    yield ConfigView(id="config-view")
            with TabPane("Log", id="log"):
                with VerticalScroll(id="log-scroll"):
                    yield LogView(id="log-view")
        yield Footer(compact=True)

    @property
    def run(self) -> RunState | None:
        snapshot = self.app.snapshot
        return snapshot.runs.get(self.key) if snapshot else None

    @property
    def palette(self) -> Palette:
        return Palette.from_app(self.app)

    def on_mount(self) -> None:
        self._show_header()
        self.set_interval(1.0, self._show_header)
        run = self.run
        if run is not None:
            self.follow(run)
        self.query_one(TabbedContent).query_one("Tabs").can_focus = False

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exit_on_error=False, group="detail", exclusive=True)
    def follow(self, run: RunState) -> None:
        """Tail the run folder until the screen closes."""
        worker = get_current_worker()
        tail = RunTail(run.path)
        while not (worker.is_cancelled or self._stop.is_set()):
            try:
                detail = tail.poll()
            except Exception as exc:  # never freeze the screen on a reader bug
                self.app.post_message(ReaderFailed("run reader", f"{type(exc).__name__}: {exc}"))
                tail, detail = RunTail(run.path), None
                self._stop.wait(2.0)
            if detail is not None:
                self.post_message(RunDetailChanged(self.key, detail))
            self._stop.wait(self.app.poll_interval)

    @on(StoreChanged)
    def _store_changed(self) -> None:
        self._show_header()

    def _show_header(self) -> None:
        self.query_one(RunHeader).show(self.run, self.app.clock(), self.palette)

    @on(RunDetailChanged)
    def _detail_changed(self, message: RunDetailChanged) -> None:
        if message.key != self.key:
            return
        detail = self.detail = message.detail
        palette = self.palette
        series = curve_series(detail)
        # lost or skipped events: the curves are not the whole run; a run folder gone or unreadable says so
        note = "; ".join(([detail.problem] if detail.problem else []) + list(detail.notes))
        self.query_one("#plot-loss", CurvesPlot).show(series["loss"], note=note)
        self.query_one("#plot-acc", CurvesPlot).show(series["acc"], note=note)
        self.query_one("#plot-lr", CurvesPlot).show(series["lr"], note=note)
        lrfind = self.query_one("#plot-lrfind", CurvesPlot)
        # only runs that chose their LR by a range test; an unreadable curve says so instead of vanishing
        lrfind.display = detail.lr_find is not None or bool(detail.lr_find_problem)
        if detail.lr_find is not None:
            lrfind.show(lr_find_series(detail))
        elif detail.lr_find_problem:
            lrfind.show([], note=detail.lr_find_problem)
        self.query_one(LayerNorms).show(detail, palette)
        self._show_results(detail, palette)
        self.query_one(ConfigView).show(detail)
        log_scroll = self.query_one("#log-scroll", VerticalScroll)
        at_end = log_scroll.scroll_y >= log_scroll.max_scroll_y
        self.query_one(LogView).show(detail, palette)
        if at_end:
            log_scroll.call_after_refresh(log_scroll.scroll_end, animate=False)

    def _show_results(self, detail: RunDetail, palette: Palette) -> None:
        report = self.query_one(ClassReport)
        results = detail.results
        if results is None:
            report.update(detail.results_problem or no_results_text(self.run))
            self.query_one(ConfusionMatrix).update("")
            self.query_one(TopErrors).update("")
            return
        report.show(results, palette, detail.export)
        classes = list(results.get("classes") or (results.get("per_class") or {}).keys())
        self.query_one(ConfusionMatrix).show(results.get("confusion_matrix") or [], classes, palette)
        self.query_one(TopErrors).show(results.get("top_errors") or [], palette)

    # -- actions -------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_cycle(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        i = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(i + step) % len(TABS)]

    def action_scroll(self, lines: int) -> None:
        pane = self.query_one(TabbedContent).active_pane
        if pane is None:
            return
        for scroller in pane.query(VerticalScroll):
            scroller.scroll_relative(y=lines, animate=False)
            break

    def action_cancel_run(self) -> None:
        if self.run is None:
            self.notify("only running or queued runs can be cancelled", title="cancel")
            return
        self.app.confirm_cancel_run(self.run)

    def action_path(self) -> None:
        run = self.run
        if run is not None:
            self.app.copy_to_clipboard(str(run.path))
            self.notify(str(run.path), title="run folder (copied)", timeout=8)


def no_results_text(run: RunState | None) -> str:
    """Why the Results tab is empty, for a run that will not finish as well as one that will."""
    status = run.status if run is not None else ""
    if status == "failed":
        why = fmt.one_line(run.summary.error) if run.summary.error else "see the Log tab"
        return f"no test results: the run failed before its test ({why})"
    if status == "cancelled":
        return "no test results: the run was cancelled before its test; resuming the grid (R) finishes it"
    return "test results appear here when the run finishes"
