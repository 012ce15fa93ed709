"""What load_dataset hands out, and the train/val carving that produces it.

torch is imported only where tensors are made: the CLI path lists and checks
datasets without paying for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..preprocess import Storage
from .errors import DataError
from .raw import ArraySplit
from .recipes import draw_balanced

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W), C 1 (grey) or 3 (RGB); contiguous, CPU
    y: torch.Tensor  # int64 (N,), 0..n_classes-1
    index: torch.Tensor  # int64 (N,): position in the source split (val: in source train)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DatasetSplits:
    name: str
    classes: tuple[str, ...]  # names in label order
    train: Split
    val: Split
    test: Split
    source: str  # one line: where it came from and how it was drawn
    storage: Storage | None = None  # how image files became x (image folders); None: arrays as given
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason) of unreadable images left out (on_bad_image "skip")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.x.shape[1])


def carve_val_positions(y: np.ndarray, fraction: float, seed: int, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions (train kept, val) splitting ``fraction`` of a training set with labels ``y`` off as
    validation, stratified by class and seeded."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    n = len(y)
    if fraction == 0.0:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    from sklearn.model_selection import train_test_split

    labels, counts = np.unique(y, return_counts=True)
    k = len(labels)
    smallest = int(counts.min()) if k else 0
    # Stratifying needs at least one val image per class; tiny user folders get exactly that.
    n_val = max(math.ceil(fraction * n), k)
    if smallest < 2 or n - n_val < k:
        raise DataError(
            f"dataset {dataset!r}: too few training images to carve a stratified {fraction:g} validation split "
            f"({n} images in {k} classes, the smallest has {smallest}); add images or use val_fraction 0"
        )
    test_size = fraction if n_val > k else n_val  # a float keeps sklearn's own rounding
    try:
        keep, val = train_test_split(np.arange(n), test_size=test_size, stratify=y, random_state=seed)
    except ValueError as exc:
        raise DataError(f"dataset {dataset!r}: can't carve a stratified validation split ({exc})") from None
    return np.sort(keep), np.sort(val)


def carve_val(train: ArraySplit, fraction: float, seed: int, dataset: str) -> tuple[ArraySplit, ArraySplit]:
    """Split ``fraction`` of train off as validation, stratified by class and seeded."""
    keep, val = carve_val_positions(train.y, fraction, seed, dataset)
    return train.take(keep), train.take(val)


def limit_positions(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Positions of at most ``limit`` training images, spread evenly over classes, seeded."""
    if limit <= 0 or limit >= len(y):
        return np.arange(len(y), dtype=np.int64)
    labels = tuple(int(c) for c in np.unique(y))
    return draw_balanced(y, labels, limit, np.random.default_rng(seed))


def limit_train(train: ArraySplit, limit: int, seed: int) -> ArraySplit:
    """At most ``limit`` training images, spread evenly over classes, seeded."""
    if limit <= 0 or limit >= len(train.y):
        return train
    return train.take(limit_positions(train.y, limit, seed))


def to_split(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> Split:
    import torch

    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)),
                 torch.from_numpy(index.astype(np.int64)))
