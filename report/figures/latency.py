"""latency_<dataset>.png: ONNX Runtime latency against accuracy, from each run's export summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from report.figures.common import MARKERS, new_figure, pretty, save, strategy_colour


def draw(dataset: str, rows: pd.DataFrame, path: Path) -> Path:
    """``rows``: run_table rows with onnx_p50_ms_batch1 and accuracy (ONNX accuracy where measured)."""
    rows = rows[np.isfinite(rows["onnx_p50_ms_batch1"].astype(float))]
    backbones = list(dict.fromkeys(rows["backbone"]))
    strategies = list(dict.fromkeys(rows["strategy"]))
    fig = new_figure(8, 5.2)
    ax = fig.subplots()
    for _, r in rows.iterrows():
        acc = r["onnx_accuracy"] if np.isfinite(r["onnx_accuracy"]) else r["accuracy"]
        p50, p90 = r["onnx_p50_ms_batch1"], r["onnx_p90_ms_batch1"]
        if np.isfinite(p90) and p90 > p50:
            ax.errorbar([p50], [acc], xerr=[[0], [p90 - p50]], color="grey", lw=1, capsize=3, zorder=2)
        ax.scatter(p50, acc, s=70, color=strategy_colour(r["strategy"], strategies),
                   marker=MARKERS[backbones.index(r["backbone"]) % len(MARKERS)], edgecolor="black", zorder=3)
        ax.annotate(f"{r['backbone']}/{r['strategy']}", (r["onnx_p50_ms_batch1"], acc), fontsize=7.5,
                    xytext=(5, 4), textcoords="offset points")
    providers = ", ".join(sorted(set(rows["onnx_provider"]) - {""})) or "unknown provider"
    hosts = sorted(set(rows["bench_host"]) - {""})
    loads = rows["bench_load_avg"].astype(float).dropna()
    where = "; ".join(hosts)
    if len(loads):
        span = f"{loads.min():.1f}" if loads.min() == loads.max() else f"{loads.min():.1f}-{loads.max():.1f}"
        where += f"; 1-min load average {span} while measuring" + (" (busy machine: noisy)" if loads.max() > 1.5
                                                                    else "")
    ax.set_xlabel(f"ONNX Runtime latency at batch 1, ms (log scale): p50, whisker to p90 ({providers})"
                  + (f"\nmeasured on {where}" if where else ""), fontsize=9)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.margins(x=0.25, y=0.08)
    ax.set_ylabel("test accuracy (ONNX model)")
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=strategy_colour(s, strategies), marker="o", ls="none", label=s)
               for s in strategies]
    handles += [Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], ls="none", mec="black", label=b)
                for i, b in enumerate(backbones)]
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_title(f"Accuracy against latency: {pretty(dataset)} (up and left is better)", fontsize=12)
    return save(fig, path)
