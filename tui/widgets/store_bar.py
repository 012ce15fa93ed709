"""One line over the runs table: the store, what is shown, counts by status, sort and filter."""

from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.widgets import Static

from tui.columns import COLUMNS
from tui.store_watcher import StoreSnapshot
from tui.theme import Palette
from tui.widgets.runs_table import View

ORDER = ("running", "queued", "done", "failed", "cancelled", "unreadable")


class StoreBar(Static):
    """Summary line of the store as the runs table shows it."""

    def show(self, snapshot: StoreSnapshot | None, shown: list[str], view: View, marked: int, palette: Palette) -> None:
        text = Text(no_wrap=False, overflow="ellipsis")
        if snapshot is None:
            self.update("reading the run store…", layout=False)
            return
        if snapshot.problem:
            text.append(f"{snapshot.problem}  ", style=palette.warning)
        total = len(snapshot.runs)
        text.append(f"{len(shown)}/{total} runs" if len(shown) != total else f"{total} runs", style="bold")
        counts = Counter(snapshot.runs[k].status for k in shown if k in snapshot.runs)
        for status in ORDER:
            if counts.get(status):
                text.append("  ")
                text.append(f"{counts[status]} {status}", style=palette.status(status))
        if view.grid:
            grid = snapshot.grids.get(view.grid)
            state = ""
            if grid is not None:
                state = "cancelling" if grid.cancel_requested and grid.running else "live" if grid.running else "idle"
            text.append(f"  grid {view.grid}" + (f" ({state})" if state else ""), style=palette.primary)
        else:
            live = sum(1 for g in snapshot.grids.values() if g.running)
            n = len(snapshot.grids)
            text.append(f"  {n} grid{'s' if n != 1 else ''}" + (f", {live} live" if live else ""))
        broken = [g for g in snapshot.grids.values() if g.problem]  # e.g. a grid.json cut short: say so
        if broken:
            more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
            text.append(f"  grid {broken[0].name}: {broken[0].problem}{more}", style=palette.warning)
        if view.dataset:
            text.append(f"  dataset {view.dataset}", style=palette.primary)
        if view.sort:
            arrow = "↓" if view.reverse else "↑"
            text.append(f"  sort {COLUMNS[view.sort].label.strip() or view.sort} {arrow}")
        if view.grouped:
            text.append("  grouped")
        if view.query:
            text.append(f"  filter “{view.query}”", style=palette.accent)
        if marked:
            text.append(f"  {marked} marked", style=palette.accent)
        if not snapshot.problem:
            text.append(f"  {snapshot.root}", style=palette.muted)
        self.update(text, layout=False)  # one line (no wrapping), whatever it says
