"""Test and sample images for the figures that show pictures, through ``engine.data.load_dataset``.

Datasets are loaded once per report. A dataset that can't be loaded (offline,
no files) is not an error: the image figures for it are skipped and the reason
is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from report.loading import RunData

log = logging.getLogger(__name__)


@dataclass
class Images:
    """One dataset's images, or why they are missing."""

    dataset: str
    classes: list[str] = field(default_factory=list)
    test_x: np.ndarray | None = None  # uint8 (N, C, H, W)
    test_y: np.ndarray | None = None
    test_index: np.ndarray | None = None  # position in the source split, when the loader gives it
    train_x: np.ndarray | None = None
    train_y: np.ndarray | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.test_x is not None


class ImageCache:
    """``engine.data.load_dataset`` results, one load per dataset name."""

    def __init__(self, data_root: str | Path = "data"):
        self.data_root = str(data_root)
        self._cache: dict[str, Images] = {}

    def get(self, dataset: str, runs: list[RunData] = ()) -> Images:
        if dataset not in self._cache:
            configs = [r.config for r in runs if r.config is not None]
            roots = [self.data_root] + [c.data.data_root for c in configs]
            # ImageFolder trees are stored at the run's image size (its config's data section)
            sizes = [c.data.image_size for c in configs]
            self._cache[dataset] = _load(dataset, [r for i, r in enumerate(roots) if r and r not in roots[:i]],
                                         sizes[0] if sizes and dataset.startswith("imagefolder:") else None)
        return self._cache[dataset]


def _load(dataset: str, roots: list[str], image_size: int | None) -> Images:
    try:
        from engine.data import load_dataset
    except ImportError as exc:
        return Images(dataset, problem=f"engine.data.load_dataset is not available ({exc})")
    problems = []
    for root in roots:
        try:
            splits = load_dataset(dataset, root, image_size=image_size)
        except Exception as exc:  # DataError and anything a half-written loader throws: report, don't fail
            problems.append(f"{root}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        test, train = splits.test, splits.train
        return Images(dataset, classes=list(splits.classes), test_x=np.asarray(test.x), test_y=np.asarray(test.y),
                      test_index=np.asarray(getattr(test, "index", None)) if hasattr(test, "index") else None,
                      train_x=np.asarray(train.x), train_y=np.asarray(train.y))
    return Images(dataset, problem="test images could not be loaded (" + "; ".join(problems) + ")")


def check_alignment(images: Images, run: RunData) -> str:
    """Empty when the run's test predictions line up with these images; else why not."""
    if not images.ok:
        return images.problem
    if run.labels is not None:
        if len(run.labels) != len(images.test_y):
            return (f"{run.run_id}: {len(run.labels)} test predictions but the dataset has "
                    f"{len(images.test_y)} test images (was the dataset changed since training?)")
        if not np.array_equal(run.labels, images.test_y):
            return f"{run.run_id}: test labels differ from the dataset's (was it changed since training?)"
    if run.source_index is not None and images.test_index is not None and len(images.test_index) == len(
            run.source_index) and not np.array_equal(run.source_index, images.test_index):
        return f"{run.run_id}: test images are in a different order than at training time"
    if run.classes and images.classes and list(run.classes) != list(images.classes):
        return f"{run.run_id}: classes {run.classes} differ from the dataset's {images.classes}"
    return ""


def samples(images: Images, per_class: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``per_class`` training images for each class (seeded pick), as (class name, (K, C, H, W))."""
    x, y = (images.train_x, images.train_y) if images.train_x is not None else (images.test_x, images.test_y)
    rng = np.random.default_rng(seed)
    out = []
    for c, name in enumerate(images.classes):
        rows = np.flatnonzero(y == c)
        pick = rng.choice(rows, size=min(per_class, len(rows)), replace=False) if len(rows) else rows
        out.append((name, x[np.sort(pick)]))
    return out
