"""The confusion matrix as a table coloured by row share (rows true, columns predicted)."""

from __future__ import annotations

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.color import Color
from textual.widgets import Static

from tui.theme import Palette


def short(name: str, width: int = 8) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def confusion_table(matrix: list[list[int]], classes: list[str], palette: Palette, base: str | None = None,
                    good: str | None = None, bad: str | None = None) -> Table:
    """Counts, with the background shaded by the share of the true class's row (diagonal in ``good``)."""
    table = Table(box=None, padding=(0, 1), title="confusion (rows true, columns predicted)", title_justify="left")
    table.add_column("true \\ pred", no_wrap=True, style="bold")
    for name in classes:
        table.add_column(short(name, 10), justify="right", no_wrap=True)
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        cells = []
        for j, count in enumerate(row):
            share = count / total
            style = Style()
            if palette.plain:
                style = Style(bold=True) if i == j else (Style(underline=True) if share >= 0.1 else Style())
            elif base and good and bad and count:
                tint = Color.parse(base).blend(Color.parse(good if i == j else bad), min(1.0, 0.15 + 0.85 * share))
                style = Style(bgcolor=tint.hex6, color=tint.get_contrast_text().hex6)
            cells.append(Text(str(count), style=style))
        table.add_row(short(classes[i] if i < len(classes) else str(i), 12), *cells)
    return table


class ConfusionMatrix(Static):
    """Coloured confusion matrix of a finished run."""

    def show(self, matrix: list[list[int]], classes: list[str], palette: Palette) -> None:
        v = self.app.theme_variables
        self.update(confusion_table(matrix, classes, palette, v.get("surface"), v.get("success"), v.get("error")))
