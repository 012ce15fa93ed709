"""From a dataset's rows to its train/val/test splits: which rows, with which labels; reads no image.

The same arguments give the same rows whether the images sit in memory or in
the dataset cache, so every way of feeding a split (in memory, streamed) sees
the same images in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import SourceArrays
from .errors import DataError
from .folder import TEST_FRACTION
from .recipes import RECIPE_SEED
from .splits import carve_val_positions, limit_positions


@dataclass(frozen=True)
class Rows:
    """One split: rows of the dataset's arrays, with their labels and source positions."""

    rows: np.ndarray  # int64, sorted: rows of SourceArrays.images
    y: np.ndarray  # int64
    index: np.ndarray  # int64: position in the source split

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Selection:
    train: Rows
    val: Rows
    test: Rows
    how: str  # how val (and train_limit) were drawn, for the dataset's one-line description

    def splits(self) -> dict[str, Rows]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _rows(arrays: SourceArrays, rows: np.ndarray) -> Rows:
    rows = np.asarray(rows, dtype=np.int64)
    return Rows(rows, arrays.labels[rows], arrays.index[rows])


def too_few_to_carve(name: str, cls: str, n: int) -> str:
    return (f"dataset {name!r}: class {cls!r} has {n} image(s); a flat folder needs at least 2 per class to carve "
            "a test split (or use train/ and test/ folders)")


def carve_test(arrays: SourceArrays, rows: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A flat folder's test split: 20% of its images, stratified, with the recipe seed (fixed: every run is
    scored on the same images)."""
    from sklearn.model_selection import train_test_split

    y = arrays.labels[rows]
    counts = np.bincount(y, minlength=len(arrays.classes))
    if counts.min() < 2:
        raise DataError(too_few_to_carve(name, arrays.classes[int(counts.argmin())], int(counts.min())))
    try:
        keep, held = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, stratify=y,
                                      random_state=RECIPE_SEED)
    except ValueError as exc:
        raise DataError(f"dataset {name!r}: can't carve a stratified test split ({exc})") from None
    return rows[np.sort(keep)], rows[np.sort(held)]


def select(arrays: SourceArrays, name: str, *, val_fraction: float, seed: int, train_limit: int) -> Selection:
    """Carve test (flat folders), validation (unless the data brought its own) and apply train_limit."""
    train = arrays.parts["train"]
    if "test" in arrays.parts:
        test = arrays.parts["test"]
    else:
        train, test = carve_test(arrays, train, name)
    if "val" in arrays.parts:
        val, how = arrays.parts["val"], "val from the data's own val split"
    else:
        keep, held = carve_val_positions(arrays.labels[train], val_fraction, seed, name)
        train, val = train[keep], train[held]
        how = f"val {val_fraction:g} of train, stratified, seed {seed}"
    if train_limit > 0:
        train = train[limit_positions(arrays.labels[train], train_limit, seed)]
        how += f"; train limited to {len(train)}"
    return Selection(_rows(arrays, train), _rows(arrays, val), _rows(arrays, test), how)
