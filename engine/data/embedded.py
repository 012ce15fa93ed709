"""Recipe subsets shipped inside the package as compressed npz files.

``footwear.npz`` holds the already-drawn footwear subset so the demo and the
tests need nothing downloaded. Each file records the recipe it was drawn
with; a file that doesn't match its recipe any more is ignored (and the
subset is drawn from the source instead), so a stale file can't silently
stand in for a changed recipe. Loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .errors import DataError
from .raw import ArraySplit, RawDataset
from .recipes import DatasetRecipe

log = logging.getLogger(__name__)

EMBEDDED_DIR = Path(__file__).resolve().parent  # a module global so tests can point it elsewhere
_RECIPE_KEYS = ("name", "source", "class_ids", "n_train", "n_test", "seed")


def path_for(name: str) -> Path:
    return EMBEDDED_DIR / f"{name}.npz"


def _fingerprint(recipe: DatasetRecipe) -> str:
    fields = asdict(recipe)
    return json.dumps({k: fields[k] for k in _RECIPE_KEYS}, sort_keys=True)


def save(path: Path, raw: RawDataset, recipe: DatasetRecipe) -> None:
    """Write a drawn subset; grey images are stored as (N, H, W) to keep the file plain."""
    def images(split: ArraySplit) -> np.ndarray:
        return split.x[:, 0] if split.x.shape[1] == 1 else split.x

    np.savez_compressed(
        path,
        train_x=images(raw.train), train_y=raw.train.y, train_index=raw.train.index,
        test_x=images(raw.test), test_y=raw.test.y, test_index=raw.test.index,
        classes=np.array(raw.classes), recipe=np.array(_fingerprint(recipe)), source=np.array(raw.source),
    )


def matches(recipe: DatasetRecipe) -> bool:
    """Whether an embedded file exists for ``recipe`` and was drawn with exactly it (reads no images)."""
    path = path_for(recipe.name)
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored = str(npz["recipe"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"embedded dataset file {path} is unreadable ({exc}); reinstall the package, "
                        f"or delete the file to draw the subset from the source") from None
    if stored != _fingerprint(recipe):
        log.warning("ignoring %s: drawn with %s, recipe is now %s", path, stored, _fingerprint(recipe))
        return False
    return True


def load(recipe: DatasetRecipe) -> RawDataset | None:
    """The embedded subset for ``recipe``, or None when there is no matching file."""
    if not matches(recipe):
        return None
    path = path_for(recipe.name)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"embedded dataset file {path} is unreadable ({exc}); reinstall the package, "
                        f"or delete the file to draw the subset from the source") from None

    def split(prefix: str) -> ArraySplit:
        x = arrays[f"{prefix}_x"]
        x = x[:, None] if x.ndim == 3 else x
        return ArraySplit(np.ascontiguousarray(x, dtype=np.uint8), arrays[f"{prefix}_y"].astype(np.int64),
                          arrays[f"{prefix}_index"].astype(np.int64))

    log.info("loaded embedded subset %s", path)
    return RawDataset(split("train"), split("test"), tuple(str(c) for c in arrays["classes"]),
                      f"{arrays['source']} [embedded {path.name}]")
