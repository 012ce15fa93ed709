"""training_history_<dataset>.png: train and validation accuracy and loss per epoch, one row per backbone."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from report.figures.common import new_figure, no_data, pretty, save, strategy_colour
from report.loading import RunData


def draw(dataset: str, runs: list[RunData], path: Path) -> Path:
    backbones = list(dict.fromkeys(r.backbone for r in runs))
    strategies = list(dict.fromkeys(r.strategy for r in runs))
    fig = new_figure(11, 3.0 * len(backbones) + 0.8)
    axes = fig.subplots(len(backbones), 2, squeeze=False)
    for row, backbone in enumerate(backbones):
        ax_acc, ax_loss = axes[row]
        drawn = False
        for run in [r for r in runs if r.backbone == backbone]:
            m = run.metrics
            if m is None:
                continue
            colour = strategy_colour(run.strategy, strategies)
            for ax, key in ((ax_acc, "acc"), (ax_loss, "loss")):
                ax.plot(m["epoch"], m[f"train_{key}"], color=colour, linestyle="--", alpha=0.8)
                ax.plot(m["epoch"], m[f"val_{key}"], color=colour, linestyle="-", marker="o", markersize=3)
                best = m[m["is_best"].astype(bool)] if "is_best" in m.columns else m.iloc[0:0]
                if len(best):
                    b = best.iloc[-1]
                    ax.plot([b["epoch"]], [b[f"val_{key}"]], marker="*", markersize=12, color=colour,
                            markeredgecolor="black", linestyle="none")
            drawn = True
        for ax, what in ((ax_acc, "accuracy"), (ax_loss, "loss (cross-entropy)")):
            ax.set_title(f"{backbone}: {what.split(' ')[0]}", fontsize=11)
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if not drawn:
                no_data(ax, "no epochs recorded yet")
    handles = [Line2D([], [], color=strategy_colour(s, strategies), lw=2, label=s) for s in strategies]
    handles += [Line2D([], [], color="grey", ls="--", label="train"),
                Line2D([], [], color="grey", ls="-", marker="o", ms=3, label="validation"),
                Line2D([], [], color="grey", marker="*", ms=11, mec="black", ls="none", label="kept (best val loss)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=9)
    fig.suptitle(f"Training history: {pretty(dataset)}", fontsize=13)
    return save(fig, path)
