"""confusion_matrices_<dataset>.png: one row-normalised confusion matrix per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from report.figures.common import new_figure, no_data, pretty, save


def draw(dataset: str, cells: list[tuple[str, str, np.ndarray | None, list[str], str]], path: Path) -> Path:
    """``cells``: (backbone, strategy, row-normalised matrix or None, classes, subtitle or why missing)."""
    backbones = list(dict.fromkeys(c[0] for c in cells))
    strategies = list(dict.fromkeys(c[1] for c in cells))
    n = max((len(c[3]) for c in cells), default=3)
    side = max(3.2, 0.55 * n + 1.6)
    fig = new_figure(side * len(strategies) + 1.0, side * len(backbones) + 0.7)
    axes = fig.subplots(len(backbones), len(strategies), squeeze=False)
    image = None
    for i, backbone in enumerate(backbones):
        for j, strategy in enumerate(strategies):
            ax = axes[i, j]
            cell = next((c for c in cells if c[0] == backbone and c[1] == strategy), None)
            if cell is None or cell[2] is None:
                ax.set_title(f"{backbone} / {strategy}", fontsize=10)
                ax.set_box_aspect(1)
                no_data(ax, cell[4] if cell else "not in grid")
                continue
            _, _, cm, classes, subtitle = cell
            image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
            ax.set_title(f"{backbone} / {strategy}\n{subtitle}", fontsize=10)
            ticks = np.arange(len(classes))
            ax.set_xticks(ticks, classes, rotation=40, ha="right", fontsize=9)
            ax.set_yticks(ticks, classes, fontsize=9)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            if len(classes) <= 12:
                for (r, c), v in np.ndenumerate(cm):
                    if len(classes) > 6 and v < 0.005 and r != c:
                        continue  # many classes: leave empty cells blank so the confusions stand out
                    ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8 if len(classes) <= 6 else 7,
                            color="white" if v > 0.55 else "black")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="fraction of the true class (rows sum to 1)")
    fig.suptitle(f"Confusion matrices (row-normalised): {pretty(dataset)}", fontsize=13)
    return save(fig, path)
