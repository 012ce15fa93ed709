"""weight_optimization_<dataset>.png: how far each layer group's weights moved, per epoch, per run.

Plotted as the % change of each group's L2 norm since before training (the
``started`` event's ``initial_norms``; the first epoch when those are missing):
frozen groups stay at 0, learning groups move. A symmetric log axis keeps the
head (which moves a lot) and the backbone (which moves a little) readable on
one plot.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib import colormaps

from report.figures.common import new_figure, no_data, pretty, save
from report.loading import RunData
from report.tables import relative_norm_change as relative_change


def draw(dataset: str, runs: list[RunData], path: Path) -> Path:
    backbones = list(dict.fromkeys(r.backbone for r in runs))
    strategies = list(dict.fromkeys(r.strategy for r in runs))
    fig = new_figure(4.2 * len(strategies) + 2.2, 3.2 * len(backbones) + 0.8)
    axes = fig.subplots(len(backbones), len(strategies), squeeze=False, sharey="row")
    for i, backbone in enumerate(backbones):
        last_drawn = None
        for j, strategy in enumerate(strategies):
            ax = axes[i, j]
            ax.set_title(f"{backbone} / {strategy}", fontsize=10)
            run = next((r for r in runs if r.backbone == backbone and r.strategy == strategy), None)
            data = relative_change(run) if run else None
            if data is None:
                no_data(ax, "no norms recorded" + (f" ({run.status})" if run else " (not in grid)"))
                continue
            epochs, groups = data
            cmap = colormaps["viridis"]
            for k, (group, values) in enumerate(groups.items()):
                ax.plot(epochs, values, color=cmap(k / max(1, len(groups) - 1)), marker="o", markersize=2.5,
                        label=group, lw=1.5)
            ax.axhline(0, color="black", lw=0.6)
            ax.set_yscale("symlog", linthresh=0.01)
            ax.set_xlabel("epoch (0 = before training)")
            if j == 0:
                ax.set_ylabel("L2 norm change since start (%)")
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
            last_drawn = ax
        if last_drawn is not None:
            handles, labels = last_drawn.get_legend_handles_labels()
            axes[i, -1].legend(handles, labels, title="layer group\n(stem -> head)", fontsize=7, title_fontsize=8,
                               loc="center left", bbox_to_anchor=(1.02, 0.5), ncols=1 if len(labels) <= 12 else 2)
    fig.suptitle(f"Which layers learn: {pretty(dataset)} (symmetric log scale; flat at 0 = frozen)", fontsize=13)
    return save(fig, path)
