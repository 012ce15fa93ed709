"""Per dataset: the best run, the winning strategy and the winning backbone."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui import format as fmt
from tui.compare import Winners
from tui.theme import Palette


def winners_table(rows: list[Winners], title: str, palette: Palette) -> Table | Text:
    if not rows:
        return Text(f"{title}: no run has a validation or test score yet", style=palette.muted)
    table = Table(box=None, padding=(0, 1), title=title, title_justify="left")
    table.add_column("dataset", style="bold", overflow="fold")
    table.add_column("best run", overflow="fold")
    table.add_column("best strategy", overflow="fold")
    table.add_column("best backbone", overflow="fold")
    for w in rows:
        best = Text(f"{w.run.summary.backbone}/{w.run.summary.strategy} ")
        best.append(f"{fmt.pct(w.run_score)}%", style=palette.best())
        table.add_row(
            w.dataset + f" ({w.n_runs})",
            best,
            f"{w.strategy} {fmt.pct(w.strategy_score)}%",
            f"{w.backbone} {fmt.pct(w.backbone_score)}%",
        )
    table.caption = f"scores: {rows[0].basis} (best run of each strategy / backbone); (n) = runs judged"
    table.caption_justify = "left"
    return table


class WinnersTable(Static):
    """Winners among the compared runs and among every run of their grids."""

    def show(self, compared: list[Winners], grid_wide: list[Winners], grids: str, palette: Palette) -> None:
        self.update(Group(
            winners_table(compared, "winners among the compared runs", palette),
            Text(""),
            winners_table(grid_wide, f"winners among all runs of {grids}", palette),
        ))
