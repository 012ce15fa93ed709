"""dataset_samples.png: a few training images of every class of every dataset in the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from report.figures.common import new_figure, no_data, pretty, save, show_image

PER_CLASS = 4


def draw(items: list[tuple[str, list[tuple[str, np.ndarray]], str]], path: Path) -> Path:
    """``items``: (dataset, [(class name, images (K, C, H, W))], problem); one band of rows per dataset."""
    width_classes = max([len(s) for _, s, _ in items if s] + [3])
    fig = new_figure(1.5 * width_classes + 0.6, sum(1.5 * PER_CLASS + 0.7 if s else 1.2 for _, s, _ in items))
    subfigs = fig.subfigures(len(items), 1, squeeze=False,
                             height_ratios=[PER_CLASS + 0.5 if s else 1 for _, s, _ in items])[:, 0]
    for sub, (dataset, samples, problem) in zip(subfigs, items):
        if not samples:
            ax = sub.subplots()
            no_data(ax, problem or "no images")
            sub.suptitle(f"{pretty(dataset)}: no images", fontsize=11, fontweight="bold")
            continue
        size = "x".join(str(v) for v in samples[0][1].shape[-2:]) if len(samples[0][1]) else "?"
        chans = "grey" if samples[0][1].shape[1] == 1 else "RGB"
        sub.suptitle(f"{pretty(dataset)}: {len(samples)} classes, {size} {chans}", fontsize=11,
                     fontweight="bold")
        axes = sub.subplots(PER_CLASS, width_classes, squeeze=False)
        for col in range(width_classes):
            for row in range(PER_CLASS):
                ax = axes[row, col]
                if col < len(samples) and row < len(samples[col][1]):
                    show_image(ax, samples[col][1][row])
                    if row == 0:
                        ax.set_title(samples[col][0], fontsize=10)
                else:
                    ax.axis("off")
    fig.suptitle("Dataset samples (training split)", fontsize=13)
    return save(fig, path)
