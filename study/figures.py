"""A study's figures (matplotlib Agg canvases, no pyplot): projections, before/after pairs, the metrics table.

Every figure of a dataset is drawn from the study folder alone (cells and points), so it can be
redrawn at any time; captions carry n (how many points, how many test images were scored).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from engine.store import StudyDir, cell_key
from report.figures.common import new_figure, no_data, save
from study import results

METHODS = {"pca": "PCA", "tsne": "t-SNE"}
TABLE_COLUMNS = ("title", "dim", "silhouette", "davies_bouldin", "silhouette_kmeans", "davies_bouldin_kmeans", "ari",
                 "nmi", "knn_accuracy", "linear_probe_accuracy", "img_per_s")


def class_colours(n: int) -> np.ndarray:
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"]
    return np.array([cmap(i % cmap.N if n <= 20 else i / n) for i in range(n)])


def _scatter(ax, xy: np.ndarray, labels: np.ndarray, colours: np.ndarray, title: str) -> None:
    ax.scatter(xy[:, 0], xy[:, 1], c=colours[labels], s=5, alpha=0.75, linewidths=0, rasterized=True)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig, classes: list[str], colours: np.ndarray) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colours[i], label=c) for i, c in enumerate(classes)]
    per_row = max(1, int(fig.get_figwidth() / 1.2))  # about what fits across the figure
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(classes), per_row), fontsize=8,
               frameon=False)


def _panel_title(row: pd.Series) -> str:
    return f"{row['title']}\nsil {row['silhouette']:.3f} · DB {row['davies_bouldin']:.2f} · NMI {row['nmi']:.3f}"


def projections(ds: str, method: str, panels: list[tuple[pd.Series, dict]], classes: list[str], n_test: int,
                path: Path) -> Path:
    """One panel per extractor, coloured by true class, the same sample in every panel."""
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = new_figure(4.2 * cols, 3.9 * rows + 0.8)
    colours = class_colours(len(classes))
    n = len(panels[0][1]["labels"])
    for i, (row, pts) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        _scatter(ax, pts[method], pts["labels"].astype(int), colours, _panel_title(row))
    how = ("fitted on all the test features, shown on the sample" if method == "pca"
           else f"perplexity {panels[0][0].get('tsne_perplexity', 30):.0f}, after PCA to "
                f"{int(panels[0][0].get('tsne_pca_dims', 50))} dims")
    fig.suptitle(f"{ds}: {METHODS[method]} of the features, coloured by class ({how})\n"
                 f"n = {n} test images (seeded, class-balanced sample of {n_test}; the same images in every panel)",
                 fontsize=10)
    _legend(fig, classes, colours)
    return save(fig, path)


def before_after(ds: str, before: tuple[pd.Series, dict], after: tuple[pd.Series, dict], classes: list[str],
                 path: Path) -> Path:
    """The same backbone before and after fine-tuning: t-SNE side by side, and every score of both."""
    fig = new_figure(13, 4.6)
    colours = class_colours(len(classes))
    for i, (row, pts) in enumerate((before, after)):
        ax = fig.add_subplot(1, 3, i + 1)
        _scatter(ax, pts["tsne"], pts["labels"].astype(int), colours, ("before: " if i == 0 else "after: ")
                 + _panel_title(row))
    ax = fig.add_subplot(1, 3, 3)
    keys = ["silhouette", "davies_bouldin", "silhouette_kmeans", "davies_bouldin_kmeans", "ari", "nmi", "knn_accuracy",
            "linear_probe_accuracy"]
    x = np.arange(len(keys))
    for j, (label, row) in enumerate((("before (pretrained)", before[0]), ("after (fine-tuned)", after[0]))):
        values = [float(row[k]) for k in keys]
        bars = ax.bar(x + (j - 0.5) * 0.38, values, 0.38, label=label, color=("#9e9e9e", "#1f77b4")[j])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [results.LABELS[k] + (" ↓" if results.WAY.get(k) == "lower" else " ↑") for k in keys],
                  rotation=30, ha="right", fontsize=8)
    ax.set_title("scores (↑ higher is better, ↓ lower is better)", fontsize=9)
    ax.legend(fontsize=8)
    n = len(after[1]["labels"])
    fig.suptitle(f"{ds}: {after[0]['extractor']} before and after fine-tuning\nt-SNE of n = {n} test images "
                 f"(the same images in both); scores on {int(after[0]['n_test'])} test images "
                 f"(silhouette on the {int(after[0]['silhouette_n'])}-image sample)", fontsize=10)
    _legend(fig, classes, colours)
    return save(fig, path)


def metrics_table(ds: str, rows: pd.DataFrame, path: Path, skipped: pd.DataFrame | None = None) -> Path:
    """Every extractor's scores as a table figure (best per column in bold), then the extractors skipped here
    (each saying why); the seed's rows below for full Fashion-MNIST."""
    seed = ds == results.SEED_DATASET
    best = results.best_per_column(rows)
    header = ["extractor", "dim", "silhouette ↑", "Davies-Bouldin ↓", "sil. k-means ↑", "DB k-means ↓", "ARI ↑",
              "NMI ↑", "kNN acc ↑", "linear acc ↑", "img/s"]
    body, bold = [], []
    for idx, row in rows.iterrows():
        cells = [str(row["title"])[:46], f"{int(row['dim'])}"]
        cells += [f"{float(row[c]):.3f}" for c in TABLE_COLUMNS[2:10]] + [f"{float(row['img_per_s']):.0f}"]
        body.append(cells)
        bold.append([best.get(c) == idx for c in TABLE_COLUMNS])
    n_scored = len(body)
    for _, row in (skipped if skipped is not None else pd.DataFrame()).iterrows():
        why = str(row.get("note", "")).split(": ")[0]  # the reason's head; metrics.csv keeps it whole
        body.append([textwrap.shorten(f"{row['extractor']}: skipped ({why})", 80)]
                    + ["–"] * (len(header) - 1))
        bold.append([False] * len(header))
    if seed:
        for _, r in results.SEED_TABLE.iterrows():
            sil, db = f"{r['silhouette']:.3f}", f"{r['davies_bouldin']:.3f}"
            body.append([f"seed: {r['extractor']}", str(r["dim"]), sil, db, sil, db, f"{r['ari']:.3f}",
                         f"{r['nmi']:.3f}", "–", "–", "–"])
            bold.append([False] * len(header))
    n_test = int(rows["n_test"].iloc[0]) if len(rows) else 0
    n_sil = int(rows["silhouette_n"].iloc[0]) if len(rows) else 0
    n_probe = int(rows["probe_train_n"].iloc[0]) if len(rows) else 0
    norm = str(rows["normalize"].iloc[0]) if "normalize" in rows and len(rows) else "none"
    caption = (f"{ds}: feature-extractor scores on {n_test} test images. Silhouette (on a seeded class-balanced "
               f"sample of n = {n_sil}) and Davies-Bouldin of the true classes, then of the k-means clusters; ARI "
               f"and NMI of k-means with k = the number of classes; kNN and linear probe fitted on {n_probe} "
               f"training images; features: {'as extracted' if norm == 'none' else norm}. Bold: this study's best per "
               f"column."
               + (" Grey rows: extractors skipped here, then the seed's table (its one silhouette and "
                  "Davies-Bouldin shown under both)." if seed else " Grey rows: extractors skipped here."
                  if n_scored < len(body) else ""))
    fig = new_figure(12.5, 0.75 + 0.27 * (len(body) + 1))
    fig.suptitle(textwrap.fill(caption, 150), fontsize=8)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    if not body:
        no_data(ax, f"no finished extractor on {ds} yet")
        return save(fig, path)
    table = ax.table(cellText=body, colLabels=header, loc="center", cellLoc="right", colLoc="right",
                     bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#eeeeee")
        elif bold[r - 1][c]:
            cell.set_text_props(weight="bold")
        if r > n_scored:
            cell.set_facecolor("#f0f0f0")
        if c == 0:
            cell.set_text_props(ha="left")
            cell.PAD = 0.02
    return save(fig, path)


def draw_dataset(sdir: StudyDir, ds: str) -> list[str]:
    """Every figure and the points CSV of one dataset from the study folder; one line per thing that failed."""
    notes: list[str] = []
    frame = results.table(sdir)
    rows = frame[(frame["dataset"] == ds) & (frame["status"] == "done")] if len(frame) else frame
    if rows.empty:
        return notes
    cells = {idx: cell_key(ds, str(row["extractor"])) for idx, row in rows.iterrows()}
    found = results.points(sdir, list(cells.values()))
    classes = [str(c) for c in (sdir.cell(next(iter(cells.values()))) or {}).get("classes", [])]
    panels = [(rows.loc[idx], found[c]) for idx, c in cells.items() if c in found]
    skipped = frame[(frame["dataset"] == ds) & (frame["status"] == "skipped")]
    steps = [("metrics table", lambda: metrics_table(ds, rows, sdir.metrics_png(ds), skipped)),
             ("points CSV", lambda: write_points(sdir, ds, panels))]
    if panels and results.same_points(dict(zip(cells.values(), [p for _, p in panels]))):
        for method in METHODS:
            steps.append((f"{METHODS[method]} figure",
                          lambda m=method: projections(ds, m, panels, classes, int(rows["n_test"].iloc[0]),
                                                       sdir.projection_png(m, ds))))
    elif panels:
        notes.append(f"{ds}: projections not drawn: the cells' samples differ (a study folder mixed by hand?)")
    by_name = {str(r["extractor"]): (r, found.get(cells[i])) for i, r in rows.iterrows()}
    for after, before in results.pairs(rows):
        a, b = by_name[str(after["extractor"])], by_name[str(before["extractor"])]
        if a[1] is not None and b[1] is not None:
            steps.append((f"before/after figure of {after['extractor']}",
                          lambda a=a, b=b, name=str(after["extractor"]):
                          before_after(ds, b, a, classes, sdir.before_after_png(ds, name))))
    for what, draw in steps:
        try:
            draw()
        except Exception as exc:  # noqa: BLE001 - a figure that fails must not cost the numbers
            notes.append(f"{ds}: {what} failed ({type(exc).__name__}: {str(exc)[:120]})")
    return notes


def write_points(sdir: StudyDir, ds: str, panels: list[tuple[pd.Series, dict]]) -> None:
    """points_<ds>.csv: extractor, test position, label, PCA x/y, t-SNE x/y; one row per point per panel."""
    frames = [pd.DataFrame({"extractor": row["extractor"], "position": pts["positions"], "label": pts["labels"],
                            "pca_x": pts["pca"][:, 0], "pca_y": pts["pca"][:, 1],
                            "tsne_x": pts["tsne"][:, 0], "tsne_y": pts["tsne"][:, 1]}) for row, pts in panels]
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        sdir.write_with(sdir.points_csv(ds), lambda tmp: frame.to_csv(tmp, index=False, float_format="%.5g"))
