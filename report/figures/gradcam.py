"""gradcam_<dataset>_<backbone>.png: where the model looked, for its most confident errors and a few
correct predictions: the image, Grad-CAM for the predicted class, Grad-CAM for the true class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from report.figures.common import new_figure, pretty, save
from report.gradcam import CamResult


def draw(dataset: str, backbone: str, strategy: str, cam: CamResult, true: np.ndarray, classes: list[str],
         n_errors: int, path: Path) -> Path:
    """The first ``n_errors`` columns are errors, the rest correct predictions."""
    n = len(true)
    fig = new_figure(1.75 * n + 1.0, 6.4)
    axes = fig.subplots(3, n, squeeze=False)
    pred = cam.probs.argmax(1)
    grey = cam.images.std(axis=-1).max() < 1e-6
    for k in range(n):
        img = cam.images[k]
        for row, (maps, label) in enumerate(((None, "image"), (cam.pred_maps, "Grad-CAM:\npredicted class"),
                                             (cam.true_maps, "Grad-CAM:\ntrue class"))):
            ax = axes[row, k]
            ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None, vmin=0, vmax=1)
            if maps is not None and not (row == 2 and pred[k] == true[k]):
                ax.imshow(maps[k], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            elif maps is not None:
                ax.set_alpha(0.3)
                ax.text(0.5, 0.5, "= predicted", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                        color="white", bbox={"facecolor": "black", "alpha": 0.5, "lw": 0})
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(label, fontsize=9)
        kind = "ERROR" if pred[k] != true[k] else "correct"
        colour = "#8b0000" if pred[k] != true[k] else "#006400"
        axes[0, k].set_title(f"{kind}\ntrue: {classes[int(true[k])]}\npred: {classes[int(pred[k])]} "
                             f"({cam.probs[k].max():.2f})", fontsize=8, color=colour)
    fig.suptitle(f"Grad-CAM: {pretty(dataset)} / {backbone} ({strategy}); {n_errors} most confident errors, "
                 f"{n - n_errors} confident correct; layer {cam.layer} ({cam.layer_side}x{cam.layer_side} map)",
                 fontsize=11)
    return save(fig, path)
