"""The main screen: every run of the store in one live table."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Input

from tui.columns import COLUMNS
from tui.messages import HeaderClicked, RowHighlighted, RowSelected, StoreChanged
from tui.screens.compare import CompareScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.latency import LatencyScreen
from tui.screens.pick import PickScreen
from tui.screens.start_grid import StartGridScreen, StartRequest
from tui.screens.study import StudyScreen
from tui.store_watcher import RunState
from tui.theme import Palette
from tui.widgets.run_line import RunLine
from tui.widgets.runs_table import RunsTable, View
from tui.widgets.store_bar import StoreBar


class RunsScreen(Screen):
    """Runs table with filter, sort, narrowing, marks and store actions."""

    AUTO_FOCUS = "#runs"

    BINDINGS = [
        Binding("space", "mark", "Mark", tooltip="Mark the run for comparison", id="runs.mark"),
        Binding("c", "compare", "Compare", tooltip="Compare the marked runs side by side", id="runs.compare"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Filter runs by words", id="runs.filter"),
        Binding("s", "sort", "Sort", tooltip="Sort by a column (again: reverse)", id="runs.sort"),
        Binding("S", "reverse", "Reverse sort", show=False, id="runs.reverse"),
        Binding("v", "narrow", "Narrow", tooltip="Show one grid or dataset", id="runs.narrow"),
        Binding("b", "group", "Group", tooltip="Group rows by grid, dataset and axis values", id="runs.group"),
        Binding("n", "new_grid", "New", tooltip="Start a grid (preset or TOML file) in the background", id="runs.new_grid"),
        Binding("x", "cancel_run", "Cancel", tooltip="Cancel the highlighted run (asks first)", id="runs.cancel_run"),
        Binding("X", "cancel_grid", "Cancel grid", tooltip="Cancel the highlighted run's grid (asks first)",
                id="runs.cancel_grid"),
        Binding("R", "resume_grid", "Resume", tooltip="Resume the highlighted run's grid in the background",
                id="runs.resume_grid"),
        Binding("e", "export", "Export", tooltip="Export the grid's best models to ONNX and time them",
                id="runs.export"),
        Binding("r", "report", "Report", tooltip="Make the highlighted run's grid's report",
                id="runs.report"),
        Binding("L", "latency", "Latency", tooltip="Accuracy vs latency of exported models",
                id="runs.latency"),
        Binding("f", "study", "Study", tooltip="Feature-extractor studies: scores and projections",
                id="runs.study"),
        Binding("p", "path", "Path", tooltip="Show and copy the run folder's path", id="runs.path"),
        Binding("asterisk", "mark_all", "Mark all shown", show=False, key_display="*", id="runs.mark_all"),
        Binding("escape", "clear", "Clear filter/marks", show=False, id="runs.clear"),
    ]

    filter_text: reactive[str] = reactive("")
    """Filter text (``/``): space-separated terms, ``status:failed``, ``!excluded``."""
    grid: reactive[str] = reactive("")
    """Show only this grid ("" = all)."""
    dataset: reactive[str] = reactive("")
    """Show only this dataset ("" = all)."""
    sort_column: reactive[str] = reactive("")
    """Column the rows are sorted by ("" = store order)."""
    reverse: reactive[bool] = reactive(False)
    """Sort descending."""
    grouped: reactive[bool] = reactive(False)
    """Order rows by grid, then dataset, then the sort column."""
    marked: reactive[frozenset[str]] = reactive(frozenset())
    """Run keys marked for comparison."""

    def __init__(self, grid: str = "") -> None:
        super().__init__()
        self.set_reactive(RunsScreen.grid, grid)

    def compose(self) -> ComposeResult:
        yield StoreBar(id="store-bar")
        yield Input(placeholder="filter: words, status:failed, dataset:footwear, !excluded", id="filter")
        yield RunsTable(id="runs")
        yield RunLine(id="run-line")
        yield Footer(compact=True)

    @property
    def view(self) -> View:
        """Which rows show and how they are ordered, from the reactives above."""
        return View(query=self.filter_text, grid=self.grid, dataset=self.dataset, sort=self.sort_column,
                    reverse=self.reverse, grouped=self.grouped)

    def _watch_any(self) -> None:
        self._show()

    watch_filter_text = watch_grid = watch_dataset = watch_sort_column = _watch_any
    watch_reverse = watch_grouped = watch_marked = _watch_any

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.set_interval(1.0, self._tick)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._show())
        self._show()

    def on_screen_resume(self) -> None:
        self._show()

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    @property
    def palette(self) -> Palette:
        return Palette.from_app(self.app)

    # -- updates -------------------------------------------------------------------

    @on(StoreChanged)
    def _store_changed(self, message: StoreChanged) -> None:
        self._show()

    def _show(self) -> None:
        if not self.is_mounted:
            return
        snapshot = self.app.snapshot
        table = self.table
        palette = self.palette
        if snapshot is not None:
            live = frozenset(k for k in self.marked if k in snapshot.runs)
            table.show(snapshot.runs, self.view, live, self.app.clock(), palette)
        self.query_one(StoreBar).show(snapshot, table.shown_keys, self.view, len(self.marked), palette)
        self._show_line()

    def _tick(self) -> None:
        self.table.tick(self.app.clock())

    @on(RowHighlighted, "#runs")
    def _row_highlighted(self) -> None:
        self._show_line()

    @on(HeaderClicked, "#runs")
    def _header_clicked(self, message: HeaderClicked) -> None:
        if message.column == "mark":
            return
        if message.column == self.sort_column:
            self.reverse = not self.reverse
        else:
            self.sort_column, self.reverse = message.column, COLUMNS[message.column].descending

    def _show_line(self) -> None:
        self.query_one(RunLine).show(self.current_run(), self.palette)

    def current_run(self) -> RunState | None:
        key = self.table.highlighted_key
        snapshot = self.app.snapshot
        if key is None or snapshot is None:
            return None
        return snapshot.runs.get(key)

    # -- opening ----------------------------------------------------------------------

    @on(RowSelected, "#runs")
    def _row_selected(self, message: RowSelected) -> None:
        self.app.push_screen(DetailScreen(message.key))

    # -- marks and comparison -----------------------------------------------------------------

    def action_mark(self) -> None:
        key = self.table.highlighted_key
        if key is None:
            return
        self.marked = self.marked ^ {key}
        self.table.action_cursor(1)

    def action_mark_all(self) -> None:
        shown = set(self.table.shown_keys)
        self.marked = frozenset() if shown <= self.marked else self.marked | shown

    def action_compare(self) -> None:
        snapshot = self.app.snapshot
        keys = [k for k in (snapshot.runs if snapshot else {}) if k in self.marked]
        if len(keys) < 2:
            self.notify("mark two or more runs with space, then press c", title="compare")
            return
        self.app.push_screen(CompareScreen(keys))

    # -- filter, sort, narrow, group --------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, message: Input.Changed) -> None:
        self.filter_text = message.value.strip()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, message: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(message.value.strip())
        self.table.focus()

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display or self.filter_text:
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.table.focus()
        elif self.marked:
            self.marked = frozenset()
        elif self.grid or self.dataset:
            self.grid = self.dataset = ""

    def action_sort(self) -> None:
        options = [("", "store order (grid, then run)")] + [
            (c.key, f"{c.label.strip() or c.key}" + (f" — {c.help}" if c.help else ""))
            for c in COLUMNS.values() if c.key != "mark" and c.key in self.table.column_keys()
        ]

        def chosen(key: str | None) -> None:
            if key is None:
                return
            if key == self.sort_column and key:
                self.reverse = not self.reverse
            else:
                self.sort_column, self.reverse = key, bool(key and COLUMNS[key].descending)

        self.app.push_screen(PickScreen("Sort by (again on the same column: reverse)", options, self.sort_column), chosen)

    def action_reverse(self) -> None:
        self.reverse = not self.reverse

    def action_group(self) -> None:
        self.grouped = not self.grouped

    def action_narrow(self) -> None:
        snapshot = self.app.snapshot
        runs = snapshot.runs.values() if snapshot else []
        grids = sorted(snapshot.grids) if snapshot else []
        datasets = sorted({r.summary.dataset for r in runs if r.summary.dataset})
        options = [("|", "all runs")]
        options += [(f"{g}|", f"grid {g}") for g in grids]
        options += [(f"|{d}", f"dataset {d}") for d in datasets]
        if len(grids) > 1:
            pairs = sorted({(r.key.split('/')[0], r.summary.dataset) for r in runs if r.summary.dataset})
            options += [(f"{g}|{d}", f"grid {g} / dataset {d}") for g, d in pairs]

        def chosen(value: str | None) -> None:
            if value is not None:
                self.grid, _, self.dataset = value.partition("|")

        self.app.push_screen(PickScreen("Narrow to", options, f"{self.grid}|{self.dataset}"), chosen)

    # -- store actions -----------------------------------------------------------------

    def action_new_grid(self) -> None:
        def chosen(request: StartRequest | None) -> None:
            if request is None:
                return
            label = request.file or f"preset {request.preset}"
            self.notify(f"starting grid {request.name}…", title="new grid")
            # narrowed only once it exists: a grid that failed to start (an unknown backbone) left the view
            # narrowed to nothing under "grid X started ... failed"
            self.app.run_store_action(f"grid {request.name} started ({label})", self.app.actions.start_grid,
                                      preset=request.preset, file=request.file, name=request.name,
                                      failed=f"grid {request.name} did not start",
                                      then=lambda: self._narrow_to(request.name))

        self.app.push_screen(StartGridScreen(self.app.runs_root), chosen)

    def _narrow_to(self, grid: str) -> None:
        self.grid, self.dataset = grid, ""

    def action_cancel_run(self) -> None:
        run = self.current_run()
        if run is not None:
            self.app.confirm_cancel_run(run)

    def _current_grid(self) -> str | None:
        run = self.current_run()
        if run is not None:
            return run.key.split("/", 1)[0]
        return self.grid or None

    def action_cancel_grid(self) -> None:
        grid = self._current_grid()
        if grid is None:
            return
        snapshot = self.app.snapshot
        active = sum(1 for k, r in (snapshot.runs.items() if snapshot else []) if k.startswith(grid + "/") and r.cancellable)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.run_store_action(f"asked grid {grid} to stop", self.app.actions.cancel_grid, grid)

        self.app.push_screen(ConfirmScreen(f"Cancel grid [b]{grid}[/b]?",
                                           f"{active} running or queued run(s) stop; finished runs are kept."), confirmed)

    def action_resume_grid(self) -> None:
        grid = self._current_grid()
        if grid is None:
            return
        snapshot = self.app.snapshot
        if snapshot and grid in snapshot.grids and snapshot.grids[grid].running:
            self.notify(f"grid {grid} is running already", title="resume")
            return
        self.app.run_store_action(f"grid {grid} resumed", self.app.actions.resume_grid, grid)
        self.notify(f"resuming grid {grid}…", title="resume")

    def action_export(self) -> None:
        grid = self._current_grid()
        if grid is not None:
            self.app.run_child(f"exporting grid {grid}", self.app.actions.export_grid, grid)

    def action_report(self) -> None:
        grid = self._current_grid()
        if grid is not None:
            self.app.run_child(f"making the report of grid {grid}", self.app.actions.report_grid, grid)

    def action_latency(self) -> None:
        self.app.push_screen(LatencyScreen())

    def action_study(self) -> None:
        self.app.push_screen(StudyScreen())

    def action_path(self) -> None:
        run = self.current_run()
        if run is None:
            return
        self.app.copy_to_clipboard(str(run.path))
        self.notify(str(run.path), title="run folder (copied)", timeout=8)
