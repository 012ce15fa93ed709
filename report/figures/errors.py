"""errors_<dataset>_<backbone>.png: the most confident misclassifications, with their images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from report.figures.common import new_figure, no_data, pretty, save, show_image

COLUMNS = 5


def draw(dataset: str, backbone: str, strategy: str, errors: pd.DataFrame, classes: list[str],
         images: np.ndarray | None, n_test: int, n_wrong: int, path: Path, note: str = "") -> Path:
    """``errors``: rows of top_errors (position, true, pred, confidence); ``images`` the test split or None."""
    n = max(len(errors), 1)
    rows = int(np.ceil(n / COLUMNS))
    fig = new_figure(2.1 * COLUMNS, 2.35 * rows + 0.9)
    axes = fig.subplots(rows, COLUMNS, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(errors):
            ax.axis("off")
            continue
        e = errors.iloc[k]
        if images is not None:
            show_image(ax, images[int(e["position"])])
        else:
            no_data(ax, "image\nunavailable")
        ax.set_title(f"#{k + 1} true: {classes[int(e['true'])]}\npred: {classes[int(e['pred'])]} "
                     f"({e['confidence']:.2f})", fontsize=8.5, color="#8b0000")
    if errors.empty:
        no_data(axes.flat[0], "no errors on the test set")
    title = (f"{pretty(dataset)} / {backbone} ({strategy}, best strategy by validation): {len(errors)} most "
             f"confident errors of {n_wrong} wrong out of {n_test}")
    if note:
        title += f"\n{note}"
    fig.suptitle(title, fontsize=11)
    return save(fig, path)
