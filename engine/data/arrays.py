"""A dataset's decoded images before any split: what the dataset cache holds, or the same decoded in memory.

Rows are stored part after part (train, then test and val when the source
has them); a part is the array of its rows, so an image that could not be
read (``data.on_bad_image = "skip"``) is simply a row no part lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..preprocess import Storage
from .raw import RawDataset

PARTS = ("train", "test", "val")


@dataclass(frozen=True)
class SourceArrays:
    images: np.ndarray  # uint8 (N, C, H, W): a read-only memory map of the cache's images.npy, or in memory
    labels: np.ndarray  # int64 (N,)
    index: np.ndarray  # int64 (N,): position in the source split (image folders: in the sorted listing)
    parts: dict[str, np.ndarray]  # "train", and "test" / "val" when the source has its own: sorted rows
    classes: tuple[str, ...]
    source: str  # one line: where the images came from and how they were drawn
    storage: Storage | None = None  # how image files became rows (image folders); None: arrays as given
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason) of every unreadable image left out
    file: Path | None = None  # the cache file holding ``images`` (streaming reads rows from it)
    offset: int = 0  # byte offset of row 0 in ``file``
    notes: dict = field(default_factory=dict)  # how the rows were had: {"cache": "hit" | "built" | "off", ...}

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.images.shape[1:])

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape))

    @classmethod
    def from_raw(cls, raw: RawDataset, val=None) -> SourceArrays:
        """A recipe's (or a folder's) train/test halves, and its own val split if any, as one set of rows."""
        splits = [("train", raw.train), ("test", raw.test)] + ([("val", val)] if val is not None else [])
        parts, start = {}, 0
        for name, split in splits:
            parts[name] = np.arange(start, start + len(split.y), dtype=np.int64)
            start += len(split.y)
        return cls(np.concatenate([s.x for _, s in splits]), np.concatenate([s.y for _, s in splits]).astype(np.int64),
                   np.concatenate([s.index for _, s in splits]).astype(np.int64), parts, tuple(raw.classes),
                   raw.source, raw.storage)
