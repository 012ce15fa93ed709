"""The most confident mistakes of a finished run: true class, predicted class, confidence."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.theme import Palette


def errors_table(errors: list[dict], palette: Palette, limit: int = 20) -> Table | Text:
    if not errors:
        return Text("no misclassified test images", style=palette.muted)
    table = Table(box=None, padding=(0, 1), title="most confident errors", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("true", no_wrap=True)
    table.add_column("predicted", no_wrap=True)
    table.add_column("confidence", justify="right")
    table.add_column("test index", justify="right")
    for i, e in enumerate(errors[:limit], 1):
        conf = e.get("confidence")
        table.add_row(str(i), str(e.get("true_name", e.get("true", "?"))),
                      Text(str(e.get("pred_name", e.get("pred", "?"))), style=palette.error),
                      f"{conf * 100:.1f}%" if isinstance(conf, (int, float)) else "?", str(e.get("index", "")))
    return table


class TopErrors(Static):
    """Table of the most confident errors."""

    def show(self, errors: list[dict], palette: Palette) -> None:
        self.update(errors_table(errors, palette))
