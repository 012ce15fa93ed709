"""lr_find_<dataset>.png: the LR range test of every run that chose its LR by one (train.lr = "find")."""

from __future__ import annotations

from pathlib import Path

from engine.lr_find import plot_ceiling
from report.figures.common import new_figure, palette, pretty, save
from report.loading import RunData


def draw(dataset: str, runs: list[RunData], path: Path) -> Path:
    """Smoothed training loss against the LR (log scale), one panel per run, the chosen LR marked."""
    runs = [r for r in runs if r.lr_find]
    cols = min(3, len(runs))
    rows = -(-len(runs) // cols)
    fig = new_figure(4.2 * cols, 3.2 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    for ax, run in zip(axes.flat, runs):
        curve = run.lr_find
        title = f"{run.backbone} / {run.strategy} (stage {curve.get('stage', 0)})"
        if run.summary is not None and run.summary.axes:
            title += f"\n{run.summary.axes_text}"
        panel(ax, curve, title)
    fig.suptitle(f"LR range test: {pretty(dataset)} (valley rule; the run trained at the chosen LR)", fontsize=12)
    return save(fig, path)


def panel(ax, curve: dict, title: str) -> None:
    """One range test on ``ax``: smoothed and batch losses against the LR, the chosen and lowest-loss LRs."""
    ax.plot(curve["lrs"], curve["losses"], color=palette(0), lw=1.6, label="smoothed loss")
    ax.plot(curve["lrs"], curve["raw_losses"], color=palette(0), lw=0.6, alpha=0.35, label="batch loss")
    chosen = curve.get("suggestion")
    if chosen:
        ax.axvline(chosen, color=palette(1), ls="--", lw=1.2, label=f"chosen {chosen:.2g}")
    low = curve.get("min_loss_lr")
    if low:
        ax.axvline(low, color="grey", ls=":", lw=1, label=f"lowest loss {low:.2g}")
    ax.set_xscale("log")
    losses = curve["losses"]
    ax.set_ylim(min(losses) * 0.95, plot_ceiling(losses) * 1.05)  # the divergence is off the top
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def draw_curve(curve: dict, title: str, path: Path) -> Path:
    """One range test as its own figure (``finetune-tui lr-find --out``)."""
    fig = new_figure(6.5, 4.2)
    panel(fig.subplots(), curve, title)
    return save(fig, path)
