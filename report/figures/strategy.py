"""strategy_comparison_<dataset>.png: validation accuracy per strategy over epochs; final test
accuracy, precision, recall and F1; epochs run until early stopping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from report.figures.common import LINESTYLES, new_figure, no_data, palette, pretty, save, strategy_colour
from report.loading import RunData

SCORES = (("accuracy", "accuracy"), ("precision_macro", "precision"), ("recall_macro", "recall"),
          ("f1_macro", "F1"))


def draw(dataset: str, runs: list[RunData], table: pd.DataFrame, path: Path) -> Path:
    """``table``: the dataset's rows of tables.run_table (same runs)."""
    backbones = list(dict.fromkeys(r.backbone for r in runs))
    strategies = list(dict.fromkeys(r.strategy for r in runs))
    n_runs = len(runs)
    fig = new_figure(min(26, max(15, 9 + 1.0 * n_runs)), 5.6 + (0.6 if n_runs > 6 else 0))
    ax_val, ax_scores, ax_epochs = fig.subplots(1, 3, width_ratios=[1.1, max(1.2, 0.22 * n_runs), 0.9])

    # (a) validation accuracy over epochs
    for run in runs:
        if run.metrics is None:
            continue
        m = run.metrics
        ax_val.plot(m["epoch"], m["val_acc"], color=strategy_colour(run.strategy, strategies),
                    linestyle=LINESTYLES[backbones.index(run.backbone) % len(LINESTYLES)], marker="o", markersize=3)
    ax_val.set_title("validation accuracy per epoch", fontsize=11)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation accuracy")
    ax_val.grid(alpha=0.3)
    ax_val.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color=strategy_colour(s, strategies), lw=2, label=s) for s in strategies]
    if len(backbones) > 1:
        handles += [Line2D([], [], color="grey", ls=LINESTYLES[i % len(LINESTYLES)], label=b)
                    for i, b in enumerate(backbones)]
    ax_val.legend(handles=handles, fontsize=8, loc="lower right")

    # (b) final test scores, grouped per run
    done = table[table["status"] == "done"]
    labels = [f"{b}\n{s}" for b, s in zip(done["backbone"], done["strategy"])]
    x = np.arange(len(done))
    width = 0.2
    for k, (col, name) in enumerate(SCORES):
        bars = ax_scores.bar(x + (k - 1.5) * width, done[col], width, label=name, color=palette(k), alpha=0.9)
        if len(done) <= 6:
            ax_scores.bar_label(bars, fmt="%.3f", fontsize=7.5, rotation=90, padding=2)
    if len(done) > 3 or max((len(lab) for lab in labels), default=0) > 24:
        ax_scores.set_xticks(x, [lab.replace("\n", " / ") for lab in labels], fontsize=8, rotation=35, ha="right")
    else:
        ax_scores.set_xticks(x, labels, fontsize=8)
    ax_scores.set_xlim(-0.8, max(len(done), 2) - 0.2)
    lowest = np.nanmin(done[[c for c, _ in SCORES]].to_numpy(dtype=float)) if len(done) else 0.0
    floor = max(0.0, np.floor((lowest - 0.08) * 10) / 10) if np.isfinite(lowest) else 0.0
    ax_scores.set_ylim(floor, 1.0 + (1.0 - floor) * 0.12)
    ax_scores.set_ylabel("test score (macro average)" + (f"; axis starts at {floor:.1f}" if floor else ""))
    ax_scores.set_title("final test accuracy, precision, recall, F1", fontsize=11)
    ax_scores.legend(fontsize=8, ncols=4, loc="upper center")
    ax_scores.grid(axis="y", alpha=0.3)
    if done.empty:
        no_data(ax_scores, "no finished runs yet")

    # (c) epochs to early stop
    rows = table.reset_index(drop=True)
    y = np.arange(len(rows))
    run_epochs = pd.to_numeric(rows["epochs_run"], errors="coerce").fillna(0)
    colours = [strategy_colour(s, strategies) for s in rows["strategy"]]
    finished = rows["status"] == "done"
    no_stop = [bool(done_) and es is not None and es == es and not bool(es)
               for done_, es in zip(finished, rows["early_stopped"])]
    bars = ax_epochs.barh(y, run_epochs, color=colours, alpha=0.85)
    for bar, hatch, done_ in zip(bars, no_stop, finished):
        bar.set_hatch("//" if hatch else "")
        if not done_:
            bar.set_alpha(0.3)
    best = pd.to_numeric(rows["best_epoch"], errors="coerce")
    ax_epochs.plot(best, y, marker="*", color="black", linestyle="none", markersize=10)
    max_epochs = pd.to_numeric(rows["max_epochs"], errors="coerce").max()
    if np.isfinite(max_epochs):
        ax_epochs.axvline(max_epochs, color="grey", ls=":", lw=1)
    for yi, (n, status) in enumerate(zip(run_epochs, rows["status"])):
        if status != "done":
            ax_epochs.text(n + 0.1, yi, status, va="center", fontsize=8, color="#8b0000")
    ax_epochs.set_yticks(y, [f"{b} / {s}" for b, s in zip(rows["backbone"], rows["strategy"])], fontsize=8)
    ax_epochs.invert_yaxis()
    ax_epochs.set_xlabel("epochs run")
    ax_epochs.set_title("epochs until early stop", fontsize=11)
    ax_epochs.legend(handles=[Line2D([], [], marker="*", color="black", ls="none", ms=10, label="kept epoch"),
                              Patch(facecolor="white", edgecolor="black", hatch="//", label="no early stop"),
                              Line2D([], [], color="grey", ls=":", label="max epochs")],
                     fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3)
    ax_epochs.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Strategy comparison: {pretty(dataset)}", fontsize=13)
    return save(fig, path)
