"""Line plots of per-epoch curves (plotext), in the theme's colours."""

from __future__ import annotations

from dataclasses import dataclass

from textual.color import Color
from textual_plotext import PlotextPlot


@dataclass(frozen=True)
class Series:
    """One line: its label and points."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]


class CurvesPlot(PlotextPlot):
    """A titled plot of several series; :meth:`show` replaces what is drawn."""

    def __init__(self, title: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title_text = title
        self.series: list[Series] = []
        self.log_y = False
        self.note = ""  # said in the title: e.g. epochs whose events are missing

    def on_mount(self) -> None:
        super().on_mount()
        self._draw()

    def show(self, series: list[Series], title: str | None = None, log_y: bool = False, note: str = "") -> None:
        if title is not None:
            self.title_text = title
        self.note = note
        self.series = [s for s in series if s.x]
        self.log_y = log_y
        self._draw()

    def _colours(self) -> list:
        if getattr(self.app, "no_color", False):
            return ["default"] * 8
        v = self.app.theme_variables
        names = ("primary", "warning", "success", "error", "accent", "secondary")
        return [Color.parse(v[n]).rgb for n in names if n in v]

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        # no series and a note: the note says why (an unreadable file, a deleted run), not "no epochs yet"
        title = self.title_text if self.series or self.note else f"{self.title_text} (no epochs yet)"
        plt.title(f"{title} - {self.note}" if self.note else title)
        colours = self._colours()
        for i, s in enumerate(self.series):
            plt.plot(list(s.x), list(s.y), label=s.label, marker="braille", color=colours[i % len(colours)])
        if self.series:
            xs = sorted({int(x) for s in self.series for x in s.x})
            step = max(1, len(xs) // 8)
            plt.xticks(xs[::step])
            if self.log_y and all(y > 0 for s in self.series for y in s.y):
                plt.yscale("log")
        self.refresh()
