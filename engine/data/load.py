"""load_dataset and check_dataset: from a name to tensors, or to a fast "can't" before any run."""

from __future__ import annotations

import logging
from pathlib import Path

from . import embedded, folder
from .errors import DataError
from .raw import RawDataset
from .recipes import RECIPE_SEED, DatasetRecipe, draw_recipe, get_recipe
from .sources import SOURCES
from .splits import DatasetSplits, finish

log = logging.getLogger(__name__)


def _ensure_source(recipe: DatasetRecipe, root: Path, download: bool) -> None:
    """Make sure the source files are there, downloading them if allowed and needed."""
    source = SOURCES[recipe.source]
    try:
        source.check(root, recipe.name)
    except DataError:
        if not download or source.download is None:
            raise
        source.download(root, recipe.name)
        source.check(root, recipe.name)


def load_raw(recipe: DatasetRecipe, data_root: str | Path = "data", *, download: bool = False) -> RawDataset:
    """The recipe's train/test subset before validation: embedded when shipped, else drawn from its source."""
    shipped = embedded.load(recipe)
    if shipped is not None:
        return shipped
    root = Path(data_root)
    _ensure_source(recipe, root, download)
    return draw_recipe(SOURCES[recipe.source].load(root, recipe.name, recipe.seed), recipe)


def load_recipe(recipe: DatasetRecipe, data_root: str | Path = "data", *, val_fraction: float = 0.1,
                seed: int = 42, download: bool = False, train_limit: int = 0) -> DatasetSplits:
    """load_dataset for a recipe object (tests use it with smaller n_train/n_test)."""
    raw = load_raw(recipe, data_root, download=download)
    return finish(recipe.name, raw, val=None, val_fraction=val_fraction, seed=seed, train_limit=train_limit)


def load_dataset(name: str, data_root: str | Path = "data", *, val_fraction: float = 0.1, seed: int = 42,
                 download: bool = False, image_size: int | None = None, train_limit: int = 0) -> DatasetSplits:
    """Load a dataset by registry name or ``imagefolder:/path``.

    Subsets and test splits are fixed by the recipe (seed 42); ``seed`` drives
    only the validation split and ``train_limit``, so runs with different
    seeds are scored on the same test images. ``image_size`` is the storage
    size of ImageFolder images (default 64); other sources keep their native
    size (resizing for the model happens per batch in engine.transforms).
    Same arguments, same bits.
    """
    if name.startswith(folder.PREFIX):
        raw, val = folder.load(name, image_size, RECIPE_SEED)
        return finish(name, raw, val=val, val_fraction=val_fraction, seed=seed, train_limit=train_limit)
    return load_recipe(get_recipe(name), data_root, val_fraction=val_fraction, seed=seed, download=download,
                       train_limit=train_limit)


def check_dataset(name: str, data_root: str | Path = "data", download: bool = False) -> None:
    """Raise DataError now if ``name`` can't be loaded later; reads no images.

    With ``download`` the missing source is fetched here, once, rather than by
    every run of a grid at the same time.
    """
    if name.startswith(folder.PREFIX):
        folder.check(name)
        return
    recipe = get_recipe(name)
    if embedded.matches(recipe):
        return
    _ensure_source(recipe, Path(data_root), download)
