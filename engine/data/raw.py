"""Numpy containers that source loaders return and recipes draw from.

Everything stays uint8 (N, C, H, W): the full CIFAR-10 train set is 150 MB
this way and would be 600 MB as float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..preprocess import Storage


@dataclass(frozen=True)
class ArraySplit:
    x: np.ndarray  # uint8 (N, C, H, W)
    y: np.ndarray  # int64 (N,)
    index: np.ndarray  # int64 (N,): position in the source split

    def __post_init__(self) -> None:
        if not (len(self.x) == len(self.y) == len(self.index)):
            raise ValueError(f"split lengths differ: x {len(self.x)}, y {len(self.y)}, index {len(self.index)}")

    @classmethod
    def whole(cls, x: np.ndarray, y: np.ndarray) -> ArraySplit:
        """A source split as read from disk: index is simply 0..N-1."""
        x = np.ascontiguousarray(x, dtype=np.uint8)
        if not x.flags.writeable:  # np.frombuffer over file bytes; torch wants writable memory
            x = x.copy()
        return cls(x, np.asarray(y, dtype=np.int64).copy(), np.arange(len(y), dtype=np.int64))

    def take(self, positions: np.ndarray) -> ArraySplit:
        """Rows at ``positions`` (copies, so a big source array can be freed)."""
        return ArraySplit(np.ascontiguousarray(self.x[positions]), self.y[positions], self.index[positions])


@dataclass(frozen=True)
class RawDataset:
    """A dataset's train and test halves before validation is carved out."""

    train: ArraySplit
    test: ArraySplit
    classes: tuple[str, ...]  # names in label order
    source: str  # one line: the files it was read from
    storage: Storage | None = None  # how image files became these arrays; None: stored as given
