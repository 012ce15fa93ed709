"""Per dataset: the best run, the winning strategy and the winning backbone, chosen on validation only."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine.store import BEST_RULE
from tui import format as fmt
from tui.compare import Winners
from tui.store_watcher import RunState
from tui.theme import Palette

RULE = f"{BEST_RULE}; test accuracy is the chosen run's score on held-out data, never used to choose"


def _versus(name: str, runner_up: RunState | None, what: str, palette: Palette) -> Text:
    """``full`` and, muted, the best run of any other strategy (or backbone): by how much it won."""
    text = Text(name)
    if runner_up is not None:
        other = getattr(runner_up.summary, what)
        text.append(f" (next: {other} {fmt.pct(runner_up.summary.best_val_acc)}%)", style=palette.muted)
    return text


def _best_run(run: RunState) -> str:
    """grid / backbone / strategy and its axis values: compared runs of several grids often share the rest.
    Spaced, so that a narrow terminal wraps it between names (rich breaks lines at spaces only)."""
    s = run.summary
    label = " / ".join(p for p in (s.grid, s.backbone, s.strategy) if p)
    return f"{label} {s.axes_text}" if s.axes_text else label


def _longest_word(cells) -> int:
    return max((len(word) for cell in cells for word in str(cell).split()), default=0)


def winners_table(rows: list[Winners], title: str, palette: Palette) -> Table | Text:
    if not rows:
        return Text(f"{title}: no run has a validation score yet", style=palette.muted)
    cells = [(w.dataset + (f" ({w.n_runs})" if w.finished else f" ({w.n_runs}, none finished)"), _best_run(w.run),
              Text(f"{fmt.pct(w.val_acc)}%", style=palette.best()),
              f"{fmt.pct(w.test_acc)}%" if w.test_acc is not None else fmt.MISSING,
              _versus(w.strategy, w.runner_up_strategy, "strategy", palette),
              _versus(w.backbone, w.runner_up_backbone, "backbone", palette)) for w in rows]
    # one space between columns, none at the edges, and each column at least as wide as its longest name:
    # at 80 columns the cells wrap between names instead of folding one ("test_efficientne" over "t")
    table = Table(box=None, padding=(0, 1), collapse_padding=True, pad_edge=False, title=title,
                  title_justify="left")
    for i, (heading, justify) in enumerate([("dataset", "left"), ("best run", "left"), ("val", "right"),
                                            ("test", "right"), ("best strategy", "left"),
                                            ("best backbone", "left")]):
        table.add_column(heading, justify=justify, overflow="fold", style="bold" if i == 0 else "",
                         min_width=_longest_word(row[i] for row in cells) if justify == "left" else None)
    for row in cells:
        table.add_row(*row)
    return table


class WinnersTable(Static):
    """Winners among the compared runs and among every run of their grids, and the rule that chose them."""

    def show(self, compared: list[Winners], grid_wide: list[Winners], grids: str, palette: Palette) -> None:
        self.update(Group(
            winners_table(compared, "winners among the compared runs", palette),
            Text(""),
            winners_table(grid_wide, f"winners among all runs of {grids}", palette),
            Text(""),
            Text(RULE, style=palette.muted),
            Text("(n) = runs judged: the finished ones, or every run with a validation score while none has "
                 "finished; next = the best run of any other strategy / backbone", style=palette.muted),
        ))
