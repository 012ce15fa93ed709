"""Shared drawing helpers: figure creation, saving, colours, image display."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

DPI = 110
# fixed colours so a strategy looks the same in every figure
STRATEGY_ORDER = ("frozen", "partial", "full", "gradual", "discriminative", "two_stage")
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def strategy_colour(strategy: str, strategies: list[str] | None = None) -> str:
    if strategy in STRATEGY_ORDER:
        return _PALETTE[STRATEGY_ORDER.index(strategy)]
    others = [s for s in (strategies or [strategy]) if s not in STRATEGY_ORDER]
    return _PALETTE[(len(STRATEGY_ORDER) + others.index(strategy)) % len(_PALETTE)]


def palette(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write the figure as a PNG, atomically (a failed draw leaves the previous file as it was)."""
    from engine.store import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, facecolor="white"))
    return path


def to_display(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """uint8 (C, H, W) -> an array imshow takes, and the colour map for grey images."""
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        return x[0], "gray"
    if x.ndim == 3:
        return np.transpose(x, (1, 2, 0)), None
    return x, "gray"


def show_image(ax, x: np.ndarray) -> None:
    img, cmap = to_display(x)
    ax.imshow(img, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def pretty(name: str) -> str:
    return name.replace("imagefolder:", "")


def no_data(ax, text: str) -> None:
    text = "\n".join(textwrap.fill(line, 32) for line in str(text).splitlines() or [""])
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#8b0000",
            clip_on=True)
    # tick_params, not set_*ticks([]): the latter would clear the ticks of every axis shared with this one
    ax.tick_params(left=False, bottom=False, labelleft=False, labelbottom=False)
