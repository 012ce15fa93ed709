"""What the study screen shows, read from a study folder (``engine.store.StudyDir``, ``study.results``).

Torch-free: the TUI reads a study's status, its cells' scores and its 2-D points; the study itself
runs in a process of its own (``finetune-tui study run --detach``) and outlives the TUI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.store import RunStore, StoreError, StudyStatus, cell_key
from study import results

# (column key, header, format) of the study table
COLUMNS = (("title", "extractor", "{}"), ("dim", "dim", "{:.0f}"), ("silhouette", "silhouette", "{:.3f}"),
           ("davies_bouldin", "DB ↓", "{:.3f}"), ("silhouette_kmeans", "sil km", "{:.3f}"),
           ("davies_bouldin_kmeans", "DB km ↓", "{:.3f}"), ("ari", "ARI", "{:.3f}"), ("nmi", "NMI", "{:.3f}"),
           ("knn_accuracy", "kNN", "{:.3f}"), ("linear_probe_accuracy", "linear", "{:.3f}"),
           ("img_per_s", "img/s", "{:.0f}"))


@dataclass(frozen=True)
class Points:
    """One extractor's projections of the dataset sample."""

    pca: np.ndarray
    tsne: np.ndarray
    labels: np.ndarray


@dataclass
class StudyView:
    """One study as the screen draws it: status line, per-dataset rows, points, notes and targets."""

    name: str
    path: Path
    status: StudyStatus
    datasets: list[str]
    rows: dict[str, list[dict]]  # dataset -> one dict per finished cell, in the study's order
    classes: dict[str, list[str]]
    points: dict[str, Points]  # cell key -> points
    targets: list[str] = field(default_factory=list)
    problem: str = ""

    def status_line(self) -> str:
        st = self.status
        line = f"study {self.name}: {st.status}, {st.done}/{st.total} cells"
        if st.status == "running":
            step = f" {st.step}/{st.steps}" if st.steps else ""
            line += f" · {st.current}: {st.stage}{step}"
        elif st.error:
            line += f" · {st.error}"
        return line

    def cells(self, dataset: str) -> list[str]:
        return [cell_key(dataset, r["extractor"]) for r in self.rows.get(dataset, [])]


def cell_text(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def studies(root: Path) -> list[str]:
    return RunStore(root).studies()


def read(root: Path, name: str) -> StudyView:
    """The study ``name`` of the store at ``root``; a view naming the problem when it can't be read."""
    store = RunStore(root)
    try:
        sdir = store.find_study(name)
        status = sdir.status()
        frame = results.table(sdir)
        config_datasets = list(sdir.config().datasets)
    except StoreError as exc:
        return StudyView(name, root / name, StudyStatus(status="failed", error=str(exc)), [], {}, {}, {},
                         problem=str(exc))
    done = frame[frame["status"] == "done"] if len(frame) else frame
    found = list(dict.fromkeys(done["dataset"])) if len(done) else []
    datasets = [d for d in config_datasets if d in found] + [d for d in found if d not in config_datasets]
    rows = {d: [r.to_dict() for _, r in done[done["dataset"] == d].iterrows()] for d in datasets}
    classes: dict[str, list[str]] = {}
    points: dict[str, Points] = {}
    problem = ""
    for d in datasets:
        for r in rows[d]:
            cell = cell_key(d, r["extractor"])
            try:
                p = sdir.points(cell)
            except StoreError as exc:
                problem = str(exc)
                continue
            if p is not None:
                points[cell] = Points(p["pca"], p["tsne"], p["labels"].astype(int))
            if d not in classes:
                classes[d] = [str(c) for c in (sdir.cell(cell) or {}).get("classes", [])]
    targets = []
    targets += [f"vs the seed (full Fashion-MNIST): {c.line}" for c in results.seed_targets(frame)]
    targets += [f"fine-tuned vs pretrained: {c.line}" for c in results.finetune_targets(frame)]
    return StudyView(name, sdir.path, status, datasets, rows, classes, points, targets, problem)


def fingerprint(root: Path, name: str) -> tuple:
    """Cheap change detector: status.json's and the cells folder's modification times."""
    try:
        sdir = RunStore(root).study(name)
    except StoreError:
        return (name,)
    stamps = []
    for path in (sdir.status_file, sdir.path / sdir.CELLS, sdir.metrics_csv):
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return (name, *stamps)


def frame_of(view: StudyView, dataset: str) -> pd.DataFrame:
    return pd.DataFrame(view.rows.get(dataset, []))
