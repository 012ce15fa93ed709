"""Hand-made study folders for the TUI, report and reader tests, written through ``engine.store.StudyDir``.

Nothing here spells a store file name; cells hold the fields the study runner writes (the few the
readers need), points share one sample so every panel shows the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.config import StudyConfig
from engine.store import StudyDir, StudyStatus, cell_key

CLASSES = [str(i) for i in range(10)]


def cell_record(dataset: str, extractor: str, kind: str, scores: dict, **extra) -> dict:
    return {"dataset": dataset, "extractor": extractor, "name": extractor, "kind": kind, "status": "done",
            "title": extra.pop("title", extractor), "dim": extra.pop("dim", 64), "classes": CLASSES, "n_classes": 10,
            "n_test": extra.pop("n_test", 100), "n_train": 200, "silhouette_n": 60, "kmeans_n": 100,
            "probe_train_n": 200, "tsne_n": 60, "img_per_s": 1000.0, "extract_seconds": 0.1, "normalize": "none",
            "knn_accuracy": 0.8, "linear_probe_accuracy": 0.85, "silhouette_kmeans": 0.3, "davies_bouldin_kmeans": 1.5,
            "finished": extra.pop("finished", 0.0), **scores, **extra}


def write_study(root: Path, name: str = "fs", cells: list[dict] | None = None, status: str = "done",
                extractors: tuple[str, ...] | None = None, datasets: tuple[str, ...] = ("digits",),
                notes: list[str] = ()) -> StudyDir:
    """A study folder as the runner leaves it: config, status, cells and their points (no metrics.csv,
    so readers build the table from the cells, as for a running study)."""
    cells = cells if cells is not None else default_cells()
    names = extractors or tuple(dict.fromkeys(c["extractor"] for c in cells))
    cfg = StudyConfig(name=name, datasets=datasets, extractors=names)
    sdir = StudyDir(Path(root) / name)
    sdir.path.mkdir(parents=True, exist_ok=True)
    sdir.write_info(cfg)
    rng = np.random.default_rng(0)
    positions = np.sort(rng.choice(100, 60, replace=False))
    labels = np.repeat(np.arange(10), 6)
    for i, c in enumerate(cells):
        c = {**c, "finished": c.get("finished") or float(i + 1)}
        key = cell_key(c["dataset"], c["extractor"])
        sdir.write_cell(key, c)
        centres = rng.normal(size=(10, 2)) * (5 + i)
        xy = (centres[labels] + rng.normal(size=(60, 2))).astype(np.float32)
        sdir.write_npz(sdir.points_file(key), pca=xy, tsne=xy[:, ::-1].copy(), labels=labels, positions=positions,
                       pca_variance=np.array([0.3, 0.2], np.float32))
    sdir.write_status(StudyStatus(status=status, done=len(cells), total=len(cells), notes=list(notes),
                                  stage="extracting" if status == "running" else status,
                                  current="digits / small_cnn" if status == "running" else ""))
    return sdir


def default_cells(dataset: str = "digits") -> list[dict]:
    return [
        cell_record(dataset, "run:g/digits__test_efficientnet__full", "run",
                    {"silhouette": 0.31, "davies_bouldin": 1.1, "ari": 0.6, "nmi": 0.7, "silhouette_kmeans": 0.4,
                     "davies_bouldin_kmeans": 1.0},
                    before="test_efficientnet@32", title="test_efficientnet fine-tuned"),
        cell_record(dataset, "test_efficientnet@32", "pretrained",
                    {"silhouette": 0.1, "davies_bouldin": 2.5, "ari": 0.3, "nmi": 0.4, "silhouette_kmeans": 0.42,
                     "davies_bouldin_kmeans": 2.0}, before=""),
        cell_record(dataset, "small_cnn", "baseline", {"silhouette": 0.2, "davies_bouldin": 1.6, "ari": 0.5, "nmi": 0.6},
                    before="", title="small CNN (from scratch, supervised)", dim=256),
    ]
