"""A feature-extractor study: its progress, every extractor's scores, and the projection as a terminal scatter."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tui import study_view
from tui.messages import StudyRead
from tui.screens.confirm import ConfirmScreen
from tui.screens.pick import PickScreen
from tui.widgets.scatter import ScatterPlot

POLL = 1.0  # seconds between looks at the study folder
EMPTY = ("No study in this store yet. Start one with\n  finetune-tui study run --datasets fashion_mnist "
         "--extractors efficientnet_lite0,small_cnn,autoencoder --detach\n(it runs in the background and "
         "survives the TUI).")
NO_STUDY = "no study in this store yet; start one with `finetune-tui study run ... --detach`"
METHODS = ("tsne", "pca")
METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}


class StudyScreen(Screen):
    """The study table of one dataset, the highlighted extractor's projection, the study's status and targets."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back", key_display="esc", id="study.back"),
        Binding("t", "method", "PCA/t-SNE", tooltip="Switch the scatter between t-SNE and PCA", id="study.method"),
        Binding("d", "dataset", "Dataset", tooltip="Show the study's next dataset", id="study.dataset"),
        Binding("o", "open_study", "Study", tooltip="Pick another study of the store", id="study.open"),
        Binding("x", "cancel", "Cancel", tooltip="Ask the running study to stop (it stays resumable)",
                id="study.cancel"),
        Binding("R", "resume", "Resume", tooltip="Resume a stopped study in the background (finished cells are kept)",
                id="study.resume"),
    ]

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.study = name  # "" = the newest study of the store
        self.dataset = ""
        self.method = METHODS[0]
        self.view: study_view.StudyView | None = None
        self._seen: tuple = ()

    def compose(self) -> ComposeResult:
        yield Static("", id="study-status")
        yield Static(EMPTY, id="study-empty")
        with Horizontal(id="study-body"):
            with Vertical(id="study-left"):
                yield DataTable(id="study-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="study-notes")
            yield ScatterPlot(id="study-scatter")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#study-empty").display = False
        self.query_one(DataTable).focus()
        self.set_interval(POLL, self._poll)
        self._poll()

    # -- reading -----------------------------------------------------------------------------

    def _poll(self) -> None:
        root = self.app.runs_root
        if not self.study:
            names = study_view.studies(root)
            if not names:
                self.query_one("#study-empty").display = True
                self.query_one("#study-body").display = False
                return
            self.study = max(names, key=lambda n: study_view.fingerprint(root, n)[1:])
        seen = study_view.fingerprint(root, self.study)
        if seen != self._seen:
            self._seen = seen
            self.read_study(root, self.study)

    @work(thread=True, exit_on_error=False, group="study", exclusive=True)
    def read_study(self, root, name: str) -> None:
        """Read the study's status, table and points off the UI thread."""
        self.post_message(StudyRead(study_view.read(root, name)))

    @on(StudyRead)
    def _study_read(self, message: StudyRead) -> None:
        if message.view.name != self.study:
            return
        self.view = message.view
        self.query_one("#study-empty").display = False
        self.query_one("#study-body").display = True
        if self.dataset not in self.view.datasets:
            self.dataset = self.view.datasets[0] if self.view.datasets else ""
        self._show()

    # -- drawing -----------------------------------------------------------------------------

    def _show(self) -> None:
        view = self.view
        if view is None:
            return
        status = view.status_line() + (f" · dataset {self.dataset}" if self.dataset else "")
        self.query_one("#study-status", Static).update(status)
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear(columns=True)  # columns again, so their widths fit this study's rows
        for key, label, _ in study_view.COLUMNS:
            table.add_column(label, key=key)
        for row in view.rows.get(self.dataset, []):
            table.add_row(*(study_view.cell_text(row, k, f) for k, _, f in study_view.COLUMNS),
                          key=row["extractor"])
        if table.row_count:
            table.move_cursor(row=min(max(keep, 0), table.row_count - 1))
        notes = [*view.targets, *view.status.notes, *([view.problem] if view.problem else [])]
        self.query_one("#study-notes", Static).update("\n".join(notes) or "no notes")
        self._show_scatter()

    def _current_row(self) -> dict | None:
        rows = self.view.rows.get(self.dataset, []) if self.view else []
        row = self.query_one(DataTable).cursor_row
        return rows[row] if 0 <= row < len(rows) else None

    def _show_scatter(self) -> None:
        plot = self.query_one(ScatterPlot)
        row = self._current_row()
        if row is None or self.view is None:
            plot.show(None, None, [], "no finished extractor yet")
            return
        pts = self.view.points.get(study_view.cell_key(self.dataset, row["extractor"]))
        if pts is None:
            plot.show(None, None, [], f"{row['extractor']}: no projection yet")
            return
        xy = pts.tsne if self.method == "tsne" else pts.pca
        title = f"{METHOD_NAMES[self.method]} · {row['extractor']} · n = {len(pts.labels)} (same for every row)"
        plot.show(xy, pts.labels, self.view.classes.get(self.dataset, []), title)

    @on(DataTable.RowHighlighted, "#study-table")
    def _row_highlighted(self) -> None:
        self._show_scatter()

    # -- actions -----------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_method(self) -> None:
        self.method = METHODS[(METHODS.index(self.method) + 1) % len(METHODS)]
        self._show_scatter()

    def action_dataset(self) -> None:
        datasets = self.view.datasets if self.view else []
        if len(datasets) > 1:
            self.dataset = datasets[(datasets.index(self.dataset) + 1) % len(datasets)]
            self._show()

    def action_open_study(self) -> None:
        names = study_view.studies(self.app.runs_root)
        if not names:
            self.notify(NO_STUDY, title="study")
            return

        def chosen(name: str | None) -> None:
            if name and name != self.study:
                self.study, self.dataset, self._seen, self.view = name, "", (), None
                self._poll()

        self.app.push_screen(PickScreen("Study", [(n, n) for n in names], self.study), chosen)

    def _no_study(self, title: str) -> bool:
        """Say so when the store has no study at all (the name is still empty): no message about a study ''."""
        if not self.study:
            self.notify(NO_STUDY, title=title)
        return not self.study

    def action_cancel(self) -> None:
        if self._no_study("cancel"):
            return
        view = self.view
        if view is None or view.status.status != "running":
            self.notify(f"study {self.study} is not running", title="cancel")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.run_store_action(f"asked study {self.study} to stop", self._cancel_study, self.study)

        self.app.push_screen(ConfirmScreen(f"Cancel study [b]{self.study}[/b]?",
                                           "It stops after its current step; finished cells are kept, and "
                                           "`finetune-tui study resume` goes on from there."), confirmed)

    def action_resume(self) -> None:
        if self._no_study("resume"):
            return
        view = self.view
        if view is None or view.status.status in ("running", "queued", "done"):
            state = view.status.status if view is not None else "not readable"
            self.notify(f"study {self.study} is {state}: nothing to resume", title="resume")
            return
        self.app.run_store_action(f"study {self.study} resumed", self.app.actions.resume_study, self.study)
        self.notify(f"resuming study {self.study}…", title="resume")

    def _cancel_study(self, name: str) -> None:
        from engine.store import RunStore

        RunStore(self.app.runs_root).find_study(name).request_cancel()
