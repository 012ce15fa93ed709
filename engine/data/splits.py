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
from .raw import ArraySplit, RawDataset
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

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.x.shape[1])


def carve_val(train: ArraySplit, fraction: float, seed: int, dataset: str) -> tuple[ArraySplit, ArraySplit]:
    """Split ``fraction`` of train off as validation, stratified by class and seeded."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return train, train.take(np.zeros(0, dtype=np.int64))
    from sklearn.model_selection import train_test_split

    labels, counts = np.unique(train.y, return_counts=True)
    n, k = len(train.y), len(labels)
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
        keep, val = train_test_split(np.arange(n), test_size=test_size, stratify=train.y, random_state=seed)
    except ValueError as exc:
        raise DataError(f"dataset {dataset!r}: can't carve a stratified validation split ({exc})") from None
    return train.take(np.sort(keep)), train.take(np.sort(val))


def limit_train(train: ArraySplit, limit: int, seed: int) -> ArraySplit:
    """At most ``limit`` training images, spread evenly over classes, seeded."""
    if limit <= 0 or limit >= len(train.y):
        return train
    labels = tuple(int(c) for c in np.unique(train.y))
    return train.take(draw_balanced(train.y, labels, limit, np.random.default_rng(seed)))


def _to_split(a: ArraySplit) -> Split:
    import torch

    return Split(torch.from_numpy(np.ascontiguousarray(a.x)), torch.from_numpy(a.y.astype(np.int64)),
                 torch.from_numpy(a.index.astype(np.int64)))


def finish(name: str, raw: RawDataset, *, val: ArraySplit | None, val_fraction: float, seed: int,
           train_limit: int) -> DatasetSplits:
    """Carve validation (unless the data brought its own), apply train_limit, make tensors."""
    if val is None:
        train, val = carve_val(raw.train, val_fraction, seed, name)
        how = f"val {val_fraction:g} of train, stratified, seed {seed}"
    else:
        train, how = raw.train, "val from the data's own val split"
    train = limit_train(train, train_limit, seed)
    if train_limit > 0:
        how += f"; train limited to {len(train.y)}"
    return DatasetSplits(name, tuple(raw.classes), _to_split(train), _to_split(val), _to_split(raw.test),
                         f"{raw.source}; {how}", raw.storage)
