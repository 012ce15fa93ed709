"""Start a grid from a preset or a TOML file; it runs detached from the TUI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, OptionList
from textual.widgets.option_list import Option

from tui.actions import ActionError, PresetInfo, check_grid_file, check_name, free_name, presets

FILE_OPTION = "__file__"
FILE_NAME = "the TOML file's own name"  # the empty name box's hint while a file is the source


@dataclass(frozen=True)
class StartRequest:
    """What to start: a preset or a file, under a grid name."""

    name: str
    preset: str = ""
    file: str = ""


class StartGridScreen(ModalScreen[StartRequest | None]):
    """Choose a preset (or a TOML file) and a grid name."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back", id="start.back"),
        Binding("ctrl+s", "start", "Start", id="start.start"),
    ]
    # under 30 rows (80x24) app.tcss drops the dialog's spacing and puts each preset on one line
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(self, runs_root: Path) -> None:
        super().__init__()
        self.runs_root = Path(runs_root)
        try:
            self.presets: list[PresetInfo] = presets()
            self.problem = ""
        except Exception as exc:  # the engine is broken or missing: say so, still allow a file
            self.presets, self.problem = [], f"presets unavailable: {exc}"
        self.choice = self.presets[0].name if self.presets else FILE_OPTION
        self.suggested = ""  # the name this dialog put in the name box; anything else the user typed

    def compose(self) -> ComposeResult:
        # scrolls where even the compact layout doesn't fit; not a tab stop of its own
        with VerticalScroll(id="start", classes="dialog", can_focus=False):
            yield Label("Start a grid (it runs in the background; closing the TUI does not stop it)", classes="dialog-title")
            options = [Option(f"{p.name}: {p.runs} runs — {p.description}", id=p.name) for p in self.presets]
            options.append(Option("TOML grid file…", id=FILE_OPTION))
            yield OptionList(*options, id="start-source")
            yield Input(placeholder="path/to/grid.toml", id="start-file")
            yield Label("grid name (its folder in the run store)", classes="field-label")
            yield Input(id="start-name", placeholder=FILE_NAME if self.choice == FILE_OPTION else "")
            yield Label(self.problem, id="start-error")
            with Horizontal(classes="buttons"):
                yield Button("Start (ctrl+s)", id="start-go", variant="success")
                yield Button("Back (esc)", id="start-back")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#start-file", Input).display = self.choice == FILE_OPTION
        self._suggest(self._source_name())
        self.query_one(OptionList).focus()

    def _source_name(self) -> str:
        """The grid name the chosen source gives: the preset's, or the TOML file's ("" while there is none)."""
        if self.choice != FILE_OPTION:
            return self.choice
        try:
            return check_grid_file(self.query_one("#start-file", Input).value.strip())
        except ActionError:
            return ""

    def _suggest(self, name: str) -> None:
        """Put ``name`` (a free one) in the name box, unless the user typed a name of their own."""
        box = self.query_one("#start-name", Input)
        if box.value.strip() in ("", self.suggested):
            self.suggested = free_name(self.runs_root, name) if name else ""
            box.value = self.suggested

    @on(OptionList.OptionHighlighted, "#start-source")
    def _source(self, message: OptionList.OptionHighlighted) -> None:
        self.choice = message.option.id or FILE_OPTION
        file_box = self.query_one("#start-file", Input)
        file_box.display = self.choice == FILE_OPTION
        # the name follows the source: a preset's name must not stay behind for a file's grid
        self._suggest(self._source_name())
        self.query_one("#start-name", Input).placeholder = FILE_NAME if self.choice == FILE_OPTION else ""

    @on(OptionList.OptionSelected, "#start-source")
    def _source_chosen(self) -> None:
        target = "#start-file" if self.choice == FILE_OPTION else "#start-name"
        self.query_one(target, Input).focus()

    @on(Input.Submitted, "#start-file")
    def _file_given(self, message: Input.Submitted) -> None:
        try:
            name = check_grid_file(message.value)
        except ActionError as exc:
            self._error(str(exc))
            return
        self._error("")
        self._suggest(name)
        self.query_one("#start-name", Input).focus()

    @on(Input.Submitted, "#start-name")
    def _name_given(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#start-go")
    def _go(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#start-back")
    def _back(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        self.query_one("#start-error", Label).update(text)

    def action_start(self) -> None:
        name = self.query_one("#start-name", Input).value.strip()
        file = self.query_one("#start-file", Input).value.strip() if self.choice == FILE_OPTION else ""
        try:
            if self.choice == FILE_OPTION:
                if not file:
                    raise ActionError("give the path of a TOML grid file")
                default = check_grid_file(file)
                if name in ("", self.suggested):  # not typed by the user: the file's own name (ctrl+s skips Enter)
                    name = self.suggested = free_name(self.runs_root, default)
            check_name(name)
        except ActionError as exc:
            self._error(str(exc))
            return
        if (self.runs_root / name).exists():
            self._error(f"grid {name!r} exists in {self.runs_root}; pick another name (or resume it with R)")
            return
        self.dismiss(StartRequest(name=name, preset="" if file else self.choice, file=file))
