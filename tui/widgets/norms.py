"""Which layers learn: relative change of each layer group's weight norm since the start."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui import format as fmt
from tui.run_tail import RunDetail
from tui.theme import Palette

LEVELS = "▁▂▃▄▅▆▇█"


def change_text(change: float) -> str:
    if change == 0:
        return "0"
    if change < 1e-4:
        return "<0.01%"
    return f"{change * 100:.2f}%"


def norms_table(detail: RunDetail, palette: Palette, bar_width: int = 12) -> Table | Text:
    """Group | start | now | change | bar | change per epoch, on one scale for every group."""
    changes = detail.norm_changes()
    if not changes:
        return Text("layer-group norms appear after the first epoch", style=palette.muted)
    top = max(c for *_, c in changes) or 1.0
    initial = detail.started.initial_norms if detail.started else {}
    table = Table(box=None, expand=False, padding=(0, 1), title="weight norm change per layer group since the start "
                  "(stem → head)", title_justify="left")
    table.add_column("group", no_wrap=True, max_width=26, overflow="ellipsis")
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("now", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True, width=bar_width)
    table.add_column("per epoch", no_wrap=True)
    for name, n0, n1, change in changes:
        base = initial.get(name) or n0
        history = [abs(e.group_norms.get(name, base) - base) / base if base else 0.0 for e in detail.epochs]
        spark = "".join(LEVELS[min(len(LEVELS) - 1, int(h / top * (len(LEVELS) - 1) + 0.5))] for h in history[-12:])
        style = palette.success if change > 0 else palette.muted
        table.add_row(name, f"{n0:.1f}", f"{n1:.1f}", change_text(change),
                      Text(fmt.bar(change / top, bar_width), style=style), Text(spark, style=palette.accent))
    return table


class LayerNorms(Static):
    """The norm-change table of the open run."""

    def show(self, detail: RunDetail, palette: Palette) -> None:
        self.update(norms_table(detail, palette))
