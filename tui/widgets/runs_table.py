"""The live runs table: one row per run, updated row by row as snapshots arrive.

A Line API widget rather than a DataTable: DataTable re-renders every visible cell
through Rich whenever any cell changes, which at a few events a second on a 500-run
store is most of a CPU core. Here each row is rendered once into a Strip and cached
until that row changes, so a streaming run costs one row, and scrolling or moving
the cursor costs a crop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.columns import COLUMNS, IDENTITY, Cell, Context, matches, sort_key
from tui.messages import HeaderClicked, RowHighlighted, RowSelected
from tui.store_watcher import RunState
from tui.theme import Palette

PAD = 1  # blank cells either side of a column


@dataclass(frozen=True)
class View:
    """Which runs the table shows and in what order."""

    query: str = ""
    grid: str = ""  # narrow to one grid ("" = all)
    dataset: str = ""  # narrow to one dataset ("" = all)
    sort: str = ""  # column key; "" = store order
    reverse: bool = False
    grouped: bool = False  # order by grid, then dataset, then the sort column

    def admits(self, run: RunState) -> bool:
        if self.grid and run.key.split("/", 1)[0] != self.grid:
            return False
        if self.dataset and run.summary.dataset != self.dataset:
            return False
        return matches(run, self.query) if self.query else True


@lru_cache(maxsize=256)
def _style(style: str | Style) -> Style:
    return style if isinstance(style, Style) else Style.parse(style) if style else Style()


def _fit(text: str, width: int, justify: str | None) -> str:
    """Cut (with an ellipsis) or pad ``text`` to exactly ``width`` cells."""
    length = cell_len(text)
    if length > width:
        out, used = [], 0
        for ch in text:
            w = cell_len(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        return "".join(out) + "…" + " " * (width - 1 - used)
    pad = " " * (width - length)
    return pad + text if justify == "right" else text + pad


class RunsTable(ScrollView, can_focus=True):
    """The runs of a store as a table; :meth:`show` reconciles it with a snapshot and a view."""

    BINDINGS = [
        Binding("enter", "select", "Open", id="runs.open"),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("pagedown,ctrl+d", "page(1)", "Page down", show=False),
        Binding("pageup,ctrl+u", "page(-1)", "Page up", show=False),
        Binding("home,g", "first", "Top", show=False),
        Binding("end,G", "last", "Bottom", show=False),
        Binding("right,l", "sideways(4)", "Right", show=False),
        Binding("left,h", "sideways(-4)", "Left", show=False),
    ]

    COMPONENT_CLASSES = {"runs-table--header", "runs-table--cursor", "runs-table--odd", "runs-table--fixed"}

    DEFAULT_CSS = """
    RunsTable {
        background: $surface;
        color: $foreground;
    }
    RunsTable > .runs-table--header {
        background: $panel;
        color: $foreground;
        text-style: bold;
    }
    RunsTable > .runs-table--odd {
        background: $surface-lighten-1;
    }
    RunsTable > .runs-table--fixed {
        color: $foreground;
    }
    RunsTable:focus > .runs-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    RunsTable > .runs-table--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, init=False)
    """Index of the highlighted row in display order."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs: dict[str, RunState] = {}  # every run in the store, by key
        self.view = View()
        self.marked: frozenset[str] = frozenset()
        self.now = 0.0
        self.palette = Palette()
        self._columns: list[str] = []
        self._widths: dict[str, int] = {}
        self._rows: list[str] = []  # keys in display order
        self._index: dict[str, int] = {}
        self._cells: dict[str, list[Cell]] = {}
        self._shown: dict[str, tuple[RunState, bool]] = {}  # key -> (state rendered, marked)
        self._version: dict[str, int] = {}
        self._order: dict[str, int] = {}
        self._layout = 0  # bumped when columns, widths or styles change
        self._strips: LRUCache[tuple, Strip] = LRUCache(2048)
        self._elapsed_at = 0.0  # when elapsed times were last refreshed (monotonic)
        self._highlighted: str | None = None

    # -- reading ----------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def shown_keys(self) -> list[str]:
        """Run keys in display order."""
        return list(self._rows)

    @property
    def highlighted_key(self) -> str | None:
        return self._rows[self.cursor_row] if 0 <= self.cursor_row < len(self._rows) else None

    def column_keys(self) -> list[str]:
        return list(self._columns)

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def get_cell(self, key: str, column: str) -> Cell:
        return self._cells[key][self._columns.index(column)]

    def cell_text(self, key: str, column: str) -> str:
        """The text shown in one cell."""
        return self.get_cell(key, column).plain

    # -- updating ----------------------------------------------------------------

    def show(self, runs: dict[str, RunState], view: View, marked: frozenset[str], now: float, palette: Palette) -> None:
        """Bring rows, cells and order in line with ``runs`` seen through ``view``."""
        keep = self.highlighted_key
        restyle = palette != self.palette
        self.runs, self.palette, self.now = runs, palette, now
        self._order = {k: i for i, k in enumerate(runs)}
        want_export = any(r.export is not None for r in runs.values())
        want_grids = not view.grid and len({k.split("/", 1)[0] for k in runs}) > 1
        want_axes = any(r.summary.axes for r in runs.values())
        want_hosts = len({r.summary.host for r in runs.values() if r.summary.host}) > 1  # runs of a cluster
        columns = [c.key for c in COLUMNS.values() if (want_export or not c.export) and (want_grids or not c.grids)
                   and (want_axes or not c.axes) and (want_hosts or not c.hosts)]
        if columns != self._columns or restyle:
            self._columns = columns
            self._layout += 1  # the header strip is cached per layout: a column gone moves every heading
            self._shown.clear()
            self._cells.clear()
        order_of = (view.sort, view.reverse, view.grouped)
        reorder = order_of != (self.view.sort, self.view.reverse, self.view.grouped) or not self._shown
        self.view, self.marked = view, marked
        visible = [k for k, r in runs.items() if view.admits(r)]
        visible_set = set(visible)
        for key in [k for k in self._shown if k not in visible_set]:
            del self._shown[key]
            self._cells.pop(key, None)
            reorder = True
        changed: list[str] = []
        for key in visible:
            run, mark = runs[key], key in marked
            shown = self._shown.get(key)
            if shown is not None and shown[0] is run and shown[1] == mark:
                continue
            if shown is None:
                reorder = True
            elif view.sort or view.grouped:
                reorder = True
            self._shown[key] = (run, mark)
            self._cells[key] = self._render_cells(run, mark)
            changed.append(key)
        self._refresh_elapsed(changed)
        relayout = self._update_widths(changed)
        if relayout:
            self._layout += 1
        if reorder:
            self._rows = self._sorted(visible)
            self._index = {k: i for i, k in enumerate(self._rows)}
        if reorder or relayout:
            self.virtual_size = Size(self._total_width(), len(self._rows) + 1)
            self.refresh()
        else:
            for key in changed:
                self._refresh_row(key)
        self._restore_cursor(keep)

    def tick(self, now: float) -> None:
        """Advance the clock: refresh the elapsed time of live runs (unless a snapshot just did)."""
        self.now = now
        if time.monotonic() - self._elapsed_at >= 0.9:
            for key in self._refresh_elapsed([]):
                self._refresh_row(key)

    def move_cursor(self, *, row: int) -> None:
        self.cursor_row = row

    # -- internals ---------------------------------------------------------------

    def _ctx(self, key: str, marked: bool) -> Context:
        return Context(now=self.now, palette=self.palette, marked=marked)

    def _render_cells(self, run: RunState, marked: bool) -> list[Cell]:
        ctx = self._ctx(run.key, marked)
        return [COLUMNS[c].render(run, ctx) for c in self._columns]

    def _refresh_elapsed(self, fresh: list[str]) -> list[str]:
        """Re-render the elapsed cell of running rows; the keys whose text changed."""
        self._elapsed_at = time.monotonic()
        if "elapsed" not in self._columns:
            return []
        i = self._columns.index("elapsed")
        out = []
        for key, (run, mark) in self._shown.items():
            if run.status == "running" and key not in fresh:
                cell = COLUMNS["elapsed"].render(run, self._ctx(key, mark))
                if cell.plain != self._cells[key][i].plain:
                    self._cells[key][i] = cell
                    self._version[key] = self._version.get(key, 0) + 1
                    out.append(key)
        for key in fresh:
            self._version[key] = self._version.get(key, 0) + 1
        return out

    def _update_widths(self, keys: list[str]) -> bool:
        """Grow auto-width columns to fit these rows; True when a width changed."""
        grew = False
        for i, column in enumerate(self._columns):
            info = COLUMNS[column]
            if info.width is not None:
                width = max(info.width, cell_len(info.label))
            else:
                width = max([self._widths.get(column, 0), cell_len(info.label)]
                            + [cell_len(self._cells[k][i].plain) for k in keys])
            if self._widths.get(column) != width:
                self._widths[column] = width
                grew = True
        return grew

    def _sorted(self, keys: list[str]) -> list[str]:
        view = self.view
        index = {c: i for i, c in enumerate(self._columns)}

        def key(k: str) -> tuple:
            cells = self._cells[k]
            parts: list = []
            if view.grouped:
                if "grid" in index:
                    parts.append(sort_key(cells[index["grid"]]))
                parts.append(sort_key(cells[index["dataset"]]))
                if "axes" in index:  # runs that share their axis values sit together
                    parts.append(sort_key(cells[index["axes"]]))
            if view.sort and view.sort in index:
                parts.append(sort_key(cells[index[view.sort]], view.reverse))
            parts.append(self._order.get(k, 0))
            return tuple(parts)

        return sorted(keys, key=key)

    def _total_width(self) -> int:
        return sum(self._widths[c] + 2 * PAD for c in self._columns)

    def _fixed_width(self) -> int:
        return sum(self._widths[c] + 2 * PAD for c in self._columns if c in IDENTITY)

    def _refresh_row(self, key: str) -> None:
        index = self._index.get(key)
        if index is not None:
            self.refresh_line(index + 1)

    def _restore_cursor(self, key: str | None) -> None:
        if not self._rows:
            self._highlight(None)
            return
        target = self._index.get(key, min(self.cursor_row, len(self._rows) - 1)) if key else min(self.cursor_row, len(self._rows) - 1)
        if target != self.cursor_row:
            self.cursor_row = target
        else:
            self._highlight(self.highlighted_key)

    def _highlight(self, key: str | None) -> None:
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(RowHighlighted(self, key))

    # -- cursor and scrolling --------------------------------------------------------

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._rows) - 1)) if self._rows else 0

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh_line(old + 1)
        self.refresh_line(new + 1)
        self._scroll_to_cursor()
        self._highlight(self.highlighted_key)

    def _scroll_to_cursor(self) -> None:
        height = self.scrollable_content_region.height - 1  # minus the header
        if height <= 0:
            return
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._scroll_to_cursor)

    def action_cursor(self, step: int) -> None:
        self.cursor_row += step

    def action_page(self, direction: int) -> None:
        self.cursor_row += direction * max(1, self.scrollable_content_region.height - 2)

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        self.cursor_row = len(self._rows) - 1

    def action_sideways(self, cells: int) -> None:
        self.scroll_to(x=self.scroll_x + cells, animate=False)

    def action_select(self) -> None:
        key = self.highlighted_key
        if key is not None:
            self.post_message(RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            column = self._column_at(event.x)
            if column is not None:
                self.post_message(HeaderClicked(self, column))
            return
        row = round(self.scroll_y) + event.y - 1
        if 0 <= row < len(self._rows):
            if row == self.cursor_row and event.chain >= 2:
                self.action_select()
            self.cursor_row = row

    def _column_at(self, x: int) -> str | None:
        fixed = self._fixed_width()
        pos = 0 if x < fixed else round(self.scroll_x)
        for column in self._columns:
            if (x < fixed) != (column in IDENTITY):
                continue
            width = self._widths[column] + 2 * PAD
            if pos <= x < pos + width:
                return column
            pos += width
        return None

    # -- rendering ---------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._layout += 1

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            full = self._header_strip()
        else:
            index = round(self.scroll_y) + y - 1
            if index >= len(self._rows):
                return Strip.blank(width, base)
            full = self._row_strip(self._rows[index], index)
        fixed = self._fixed_width()
        scroll_x = round(self.scroll_x)
        left = full.crop(0, fixed)
        right = full.crop(fixed + scroll_x, fixed + scroll_x + max(0, width - fixed))
        return Strip.join([left, right]).extend_cell_length(width, base).crop(0, width)

    def _header_strip(self) -> Strip:
        key = ("header", self._layout, self.view.sort, self.view.reverse)
        strip = self._strips.get(key)
        if strip is None:
            style = self.get_component_rich_style("runs-table--header")
            segments = []
            for column in self._columns:
                label = COLUMNS[column].label
                if column == self.view.sort:  # the arrow survives a narrow column: the label gives way
                    text, room = label.strip(), self._widths[column] - 2
                    label = f"{text if len(text) <= room else text[:max(0, room - 1)] + '…'} "
                    label += "↓" if self.view.reverse else "↑"
                info = COLUMNS[column]
                justify = "right" if info.numeric else None
                segments.append(Segment(" " * PAD + _fit(label, self._widths[column], justify) + " " * PAD, style))
            strip = self._strips[key] = Strip(segments, self._total_width())
        return strip

    def _row_strip(self, key: str, index: int) -> Strip:
        cursor = index == self.cursor_row
        odd = index % 2 == 1
        cache_key = (key, self._version.get(key, 0), cursor, odd, self._layout)
        strip = self._strips.get(cache_key)
        if strip is None:
            if cursor:
                base = self.rich_style + self.get_component_rich_style("runs-table--cursor")
            elif odd:
                base = self.rich_style + self.get_component_rich_style("runs-table--odd")
            else:
                base = self.rich_style
            segments = []
            for column, cell in zip(self._columns, self._cells[key]):
                style = base if cursor else base + _style(cell.style)
                if cursor and cell.style:
                    cell_style = _style(cell.style)
                    style = base + Style(bold=cell_style.bold, italic=cell_style.italic)
                segments.append(Segment(" " * PAD, base))
                segments.append(Segment(_fit(cell.plain, self._widths[column], cell.justify), style))
                segments.append(Segment(" " * PAD, base))
            strip = self._strips[cache_key] = Strip(segments, self._total_width())
        return strip
