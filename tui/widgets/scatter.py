"""A 2-D scatter coloured by class (plotext), for a study's PCA and t-SNE projections."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

# tab10, so a class has the colour it has in the study's PNGs
CLASS_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


class ScatterPlot(PlotextPlot):
    """Points coloured by label; :meth:`show` replaces what is drawn."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title_text = ""
        self.xy: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.names: list[str] = []

    def on_mount(self) -> None:
        super().on_mount()
        self._draw()

    def show(self, xy: np.ndarray | None, labels: np.ndarray | None, names: list[str], title: str) -> None:
        self.xy, self.labels, self.names, self.title_text = xy, labels, names, title
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title_text)
        if self.xy is None or self.labels is None or not len(self.xy):
            self.refresh()
            return
        mono = getattr(self.app, "no_color", False)
        for label in np.unique(self.labels):
            sel = self.labels == label
            name = self.names[label] if 0 <= label < len(self.names) else str(label)
            colour = "default" if mono else CLASS_COLOURS[int(label) % len(CLASS_COLOURS)]
            plt.scatter(self.xy[sel, 0].tolist(), self.xy[sel, 1].tolist(), marker="dot", color=colour, label=name)
        plt.xticks([])
        plt.yticks([])
        self.refresh()
