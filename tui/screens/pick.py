"""A small chooser: a title and a list of options; enter picks, escape leaves."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option


class PickScreen(ModalScreen[str | None]):
    """Pick one of ``options`` ((value, label) pairs); dismisses with the value or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back", id="pick.back"),
        Binding("j", "down", "Down", show=False),
        Binding("k", "up", "Up", show=False),
    ]

    def __init__(self, title: str, options: list[tuple[str, str]], current: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.options = options
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="pick", classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield OptionList(*[Option(label, id=f"o{i}") for i, (_, label) in enumerate(self.options)], id="pick-list")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        values = [v for v, _ in self.options]
        box = self.query_one(OptionList)
        box.highlighted = values.index(self.current) if self.current in values else 0
        box.focus()

    def action_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    @on(OptionList.OptionSelected)
    def _selected(self, message: OptionList.OptionSelected) -> None:
        self.dismiss(self.options[message.option_index][0])
