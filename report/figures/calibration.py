"""calibration_<dataset>.png: reliability diagram and expected calibration error per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from report.figures.common import new_figure, no_data, pretty, save
from report.metrics import Reliability


def draw(dataset: str, cells: list[tuple[str, str, Reliability | None, str]], path: Path) -> Path:
    """``cells``: (backbone, strategy, reliability or None, why missing)."""
    backbones = list(dict.fromkeys(c[0] for c in cells))
    strategies = list(dict.fromkeys(c[1] for c in cells))
    fig = new_figure(3.7 * len(strategies) + 0.4, 3.9 * len(backbones) + 0.8)
    axes = fig.subplots(len(backbones), len(strategies), squeeze=False)
    for i, backbone in enumerate(backbones):
        for j, strategy in enumerate(strategies):
            ax = axes[i, j]
            cell = next((c for c in cells if c[0] == backbone and c[1] == strategy), None)
            if cell is None or cell[2] is None:
                ax.set_title(f"{backbone} / {strategy}", fontsize=10)
                no_data(ax, cell[3] if cell else "not in grid")
                continue
            rel = cell[2]
            centres = (rel.edges[:-1] + rel.edges[1:]) / 2
            width = rel.edges[1] - rel.edges[0]
            filled = rel.counts > 0
            ax.bar(centres[filled], rel.accuracy[filled], width * 0.95, color="#1f77b4", edgecolor="black", lw=0.5,
                   label="accuracy")
            gap_lo = np.minimum(rel.accuracy, rel.confidence)[filled]
            gap_hi = np.maximum(rel.accuracy, rel.confidence)[filled]
            ax.bar(centres[filled], gap_hi - gap_lo, width * 0.95, bottom=gap_lo, color="#d62728", alpha=0.35,
                   hatch="//", edgecolor="#d62728", lw=0.5, label="gap to confidence")
            ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect calibration")
            share = ax.twinx()
            share.stairs(rel.counts / rel.counts.sum(), rel.edges, color="#555555", lw=1.2, alpha=0.8)
            share.set_ylim(0, 1)
            share.set_ylabel("share of predictions", fontsize=8, color="#555555")
            share.tick_params(labelsize=7, colors="#555555")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence (top-class probability)")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{backbone} / {strategy}\nECE {rel.ece * 100:.1f}%  (acc {rel.accuracy_overall:.2f}, "
                         f"mean conf {rel.mean_confidence:.2f})", fontsize=9.5)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Reliability diagrams: {pretty(dataset)} ({len(cells[0][2].counts) if cells and cells[0][2] else 15}"
                 f" equal-width bins; grey step = share of predictions per bin)", fontsize=12)
    return save(fig, path)
