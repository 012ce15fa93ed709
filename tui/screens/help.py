"""Every key of every screen, read from the BINDINGS themselves so it never goes stale."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

FILTER_HELP = (
    "Filter (/): space-separated words must all occur (name, status, grid, error); "
    "field:value matches one field (status:failed, dataset:footwear, backbone:, strategy:, grid:); "
    "!word excludes. Enter keeps the filter, escape clears it."
)


class HelpScreen(ModalScreen[None]):
    """The key map."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss(None)", "Close", key_display="esc", id="help.close"),
        Binding("j,down", "scroll(1)", "Down", show=False),
        Binding("k,up", "scroll(-1)", "Up", show=False),
    ]

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__()
        self.sections = sections  # (screen title, its bindings), in the order a user meets them

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static(self._table(), id="help-keys")
            yield Static(FILTER_HELP, id="help-filter")
        yield Footer(compact=True)

    def _table(self) -> Table:
        table = Table(title="Keys", expand=True, show_header=False, box=None, padding=(0, 1))
        table.add_column("key", style="bold", no_wrap=True, width=14)
        table.add_column("action")
        for title, bindings in self.sections:
            table.add_row(Text(title, style="bold underline"), "")
            seen: set[tuple[str, str]] = set()
            for binding in bindings:
                keys = " ".join(self.app.get_key_display(Binding(k.strip(), binding.action)) for k in binding.key.split(","))
                if binding.key_display and "," not in binding.key:
                    keys = binding.key_display
                if (keys, binding.description) in seen:
                    continue
                seen.add((keys, binding.description))
                table.add_row(keys, binding.tooltip or binding.description)
        return table

    def action_scroll(self, lines: int) -> None:
        self.query_one("#help", VerticalScroll).scroll_relative(y=lines, animate=False)
