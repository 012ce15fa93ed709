"""final_comparison.png: test accuracy and macro F1 by dataset and backbone, against the seed's table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from report.figures.common import new_figure, palette, pretty, save
from report.reference import REFERENCE_IMAGE_SIZE, reference


def draw(acc: pd.DataFrame, f1: pd.DataFrame, strategies: pd.DataFrame, path: Path) -> Path:
    """``acc``/``f1``/``strategies``: dataset x backbone tables of the selected runs."""
    datasets, backbones = list(acc.index), list(acc.columns)
    fig = new_figure(max(10, 2.2 * len(datasets) * max(1, len(backbones)) * 0.8 + 3), 5.2)
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / max(1, len(backbones))
    x = np.arange(len(datasets))
    any_ref = False
    for ax, table, name, k_ref in ((axes[0], acc, "test accuracy", 0), (axes[1], f1, "test F1 (macro)", 1)):
        for j, backbone in enumerate(backbones):
            xs = x + (j - (len(backbones) - 1) / 2) * width
            values = table[backbone].to_numpy(dtype=float)
            bars = ax.bar(xs, np.nan_to_num(values), width * 0.92, color=palette(j), label=backbone)
            for xi, v, ds, bar in zip(xs, values, datasets, bars):
                strat = strategies.loc[ds, backbone] if ds in strategies.index else None
                text = "n/a" if not np.isfinite(v) else f"{v:.2f}\n{strat}" if isinstance(strat, str) else f"{v:.2f}"
                ax.text(xi, (v if np.isfinite(v) else 0) + 0.01, text, ha="center", va="bottom", fontsize=7)
                ref = reference(ds, backbone)
                if ref is not None:
                    any_ref = True
                    ax.hlines(ref[k_ref], xi - width * 0.46, xi + width * 0.46, colors="black", lw=2.2)
        ax.set_xticks(x, [pretty(d) for d in datasets])
        ax.set_title(name, fontsize=11)
        ax.set_ylim(0, 1.15)
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlabel("dataset")
    axes[0].set_ylabel("score on the test split")
    handles = [Patch(color=palette(j), label=b) for j, b in enumerate(backbones)]
    if any_ref:
        handles.append(Line2D([], [], color="black", lw=2.2, label=f"seed reference ({REFERENCE_IMAGE_SIZE} px)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=9)
    fig.suptitle("Final comparison: best strategy per dataset and backbone (chosen on validation)", fontsize=13)
    return save(fig, path)
