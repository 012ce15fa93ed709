"""A study's numbers as tables, the seed's reference table, and the issue's targets checked against them.

Torch-free (the TUI and the report read studies through this): everything comes from the study
folder through ``engine.store.StudyDir``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.store import StoreError, StudyDir

# The seed's feature-extractor table on Fashion-MNIST (10 classes, k-means with k = 10).
SEED_DATASET = "fashion_mnist"
SEED_N_TEST = 10000
SEED_TABLE = pd.DataFrame(
    [("small CNN trained from scratch", 256, 0.254, 1.248, 0.305, 0.464),
     ("convolutional autoencoder", 128, 0.244, 1.525, 0.335, 0.518),
     ("VGG16 (ImageNet)", 512, 0.180, 1.731, 0.300, 0.457),
     ("ResNet50 (ImageNet)", 2048, 0.207, 1.457, 0.257, 0.423),
     ("MobileNetV2 (ImageNet)", 1280, 0.273, 2.049, 0.165, 0.310)],
    columns=["extractor", "dim", "silhouette", "davies_bouldin", "ari", "nmi"],
)
# the four clustering scores and which way is better, under the two readings of the seed's silhouette and
# Davies-Bouldin: of the true classes (the words), or of the k-means clusters the seed also scored by
# ARI and NMI. Both are measured; every target is checked under both and says which.
DEFINITIONS = {
    "classes": {"silhouette": "higher", "davies_bouldin": "lower", "ari": "higher", "nmi": "higher"},
    "k-means": {"silhouette_kmeans": "higher", "davies_bouldin_kmeans": "lower", "ari": "higher", "nmi": "higher"},
}
DEFINITION_TEXT = {"classes": "silhouette and Davies-Bouldin of the true classes",
                   "k-means": "silhouette and Davies-Bouldin of the k-means clusters"}
SCORES = DEFINITIONS["classes"]
SEED_COLUMN = {"silhouette": "silhouette", "davies_bouldin": "davies_bouldin", "silhouette_kmeans": "silhouette",
               "davies_bouldin_kmeans": "davies_bouldin", "ari": "ari", "nmi": "nmi"}
LABELS = {"silhouette": "silhouette", "davies_bouldin": "Davies-Bouldin", "ari": "ARI", "nmi": "NMI",
          "knn_accuracy": "kNN acc", "linear_probe_accuracy": "linear acc", "silhouette_kmeans": "silhouette (k-means)",
          "davies_bouldin_kmeans": "Davies-Bouldin (k-means)", "img_per_s": "img/s", "dim": "dim"}
WAY = {**DEFINITIONS["classes"], **DEFINITIONS["k-means"], "knn_accuracy": "higher", "linear_probe_accuracy": "higher"}


def table(sdir: StudyDir) -> pd.DataFrame:
    """One row per cell: metrics.csv once written, else the finished cells so far (a running study)."""
    try:
        frame = sdir.metrics()
    except StoreError:
        frame = None
    cells = sdir.cells()
    if frame is None or len(frame[frame["status"] == "done"]) < len(cells):
        # a running study: its cells so far, in the order they were computed (the study's order)
        cells.sort(key=lambda c: float(c.get("finished") or 0.0))
        frame = pd.DataFrame([{k: v for k, v in c.items() if not isinstance(v, (list, dict))} for c in cells])
    if frame.empty:
        return pd.DataFrame(columns=["dataset", "extractor", "title", "kind", "status", *SCORES])
    return frame


def seed_best(definition: str = "classes") -> dict[str, float]:
    """The best value of each clustering score over the seed's rows (what "beats every row" must beat)."""
    return {k: float(SEED_TABLE[SEED_COLUMN[k]].max() if way == "higher" else SEED_TABLE[SEED_COLUMN[k]].min())
            for k, way in DEFINITIONS[definition].items()}


def better(score: str, value: float, than: float) -> bool:
    if value is None or not math.isfinite(float(value)):
        return False
    return value > than if WAY[score] == "higher" else value < than


@dataclass(frozen=True)
class Check:
    """One target, measured: met or not, and the line that says so."""

    name: str
    met: bool
    line: str


def _scores_text(row, against: dict[str, float]) -> str:
    signs = {("higher", True): ">", ("higher", False): "≤", ("lower", True): "<", ("lower", False): "≥"}
    return ", ".join(f"{LABELS[k]} {row[k]:.3f} {signs[WAY[k], better(k, row[k], against[k])]} {against[k]:.3f}"
                     for k in against)


def wins(row, against: dict[str, float]) -> int:
    return sum(better(k, row[k], against[k]) for k in against)


def seed_target(frame: pd.DataFrame, definition: str = "classes") -> Check | None:
    """Target 1: on full Fashion-MNIST's test split, the best extractor beats every seed row on all four scores
    (under ``definition``). None when the study has no finished full Fashion-MNIST cell."""
    rows = frame[(frame["dataset"] == SEED_DATASET) & (frame["status"] == "done")]
    if "n_test" in rows:
        rows = rows[pd.to_numeric(rows["n_test"], errors="coerce") == SEED_N_TEST]
    if rows.empty:
        return None
    target = seed_best(definition)
    ranked = rows.assign(_wins=[wins(r, target) for _, r in rows.iterrows()]).sort_values(
        ["_wins", "nmi"], ascending=False)
    best = ranked.iloc[0]
    met = int(best["_wins"]) == len(target)
    beating = [str(r["extractor"]) for _, r in ranked.iterrows() if int(r["_wins"]) == len(target)]
    also = f"; {len(beating)} extractor(s) do: {', '.join(beating)}" if len(beating) > 1 else ""
    return Check(f"beats the seed ({definition})", met,
                 f"{'met' if met else 'not met'} ({DEFINITION_TEXT[definition]}): best extractor {best['extractor']} "
                 f"({int(best['_wins'])} of 4 scores beat the seed's best row): {_scores_text(best, target)}{also}")


def seed_targets(frame: pd.DataFrame) -> list[Check]:
    """Target 1 under both definitions (none when there is no full Fashion-MNIST cell)."""
    checks = [seed_target(frame, d) for d in DEFINITIONS] if len(frame) else []
    return [c for c in checks if c is not None]


def pairs(frame: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(fine-tuned cell, the same backbone's pretrained cell) per dataset, where both finished."""
    done = frame[frame["status"] == "done"]
    out = []
    if "before" not in done:
        return out
    for _, row in done[done["kind"] == "run"].iterrows():
        before = done[(done["dataset"] == row["dataset"]) & (done["extractor"] == row["before"])]
        if len(before):
            out.append((row, before.iloc[0]))
    return out


def finetune_targets(frame: pd.DataFrame) -> list[Check]:
    """Target 2: fine-tuned features beat their own pretrained features on all four scores, per pair and
    definition."""
    checks = []
    for after, before in pairs(frame) if len(frame) else []:
        for definition, scores in DEFINITIONS.items():
            against = {k: float(before[k]) for k in scores}
            n = wins(after, against)
            checks.append(Check(f"{after['extractor']} on {after['dataset']} ({definition})", n == len(scores),
                                f"{'met' if n == len(scores) else 'not met'} on {after['dataset']} "
                                f"({DEFINITION_TEXT[definition]}): {after['extractor']} vs {before['extractor']} "
                                f"({n} of 4 better): {_scores_text(after, against)}"))
    return checks


def best_per_column(rows: pd.DataFrame) -> dict[str, object]:
    """Index of the best row per score column (the figure and the TUI mark it)."""
    out = {}
    for col, way in WAY.items():
        values = pd.to_numeric(rows.get(col), errors="coerce") if col in rows else None
        if values is not None and values.notna().any():
            out[col] = values.idxmax() if way == "higher" else values.idxmin()
    return out


def points(sdir: StudyDir, cells: list[str]) -> dict[str, dict]:
    """Each cell's projections (``pca``, ``tsne``, ``labels``), only those present; StoreError when torn."""
    out = {}
    for cell in cells:
        p = sdir.points(cell)
        if p is not None:
            out[cell] = p
    return out


def same_points(found: dict[str, dict]) -> bool:
    """Every panel shows the same test images (positions equal in every cell)."""
    positions = [np.asarray(p["positions"]) for p in found.values() if "positions" in p]
    return all(np.array_equal(positions[0], q) for q in positions[1:]) if positions else True
