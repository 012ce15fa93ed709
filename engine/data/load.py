"""From a dataset name to its rows and splits: load_dataset, open_dataset, check_dataset.

Every dataset becomes ``SourceArrays`` (decoded rows, labels, parts), built
once into the dataset cache when one is given (``engine.data.cache``) or in
memory, then split by ``engine.data.select``. ``load_dataset`` hands the splits
out as tensors; ``open_dataset`` keeps them as rows for the trainer to read into
memory or stream. ``check_dataset`` is the pre-flight: missing sources, a broken
folder layout and every unreadable image, before any run starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.store import DatasetCacheDir

from . import cache as cache_mod
from . import embedded, folder, scan
from .arrays import PARTS, SourceArrays
from .decode import Progress, decode_files
from .errors import DataError
from .names import folder_spec, is_folder
from .raw import RawDataset
from .recipes import RECIPE_SEED, DatasetRecipe, draw_recipe, get_recipe
from .select import Rows, Selection, select, too_few_to_carve
from .sources import SOURCES
from .splits import DatasetSplits, to_split

log = logging.getLogger(__name__)

BAD_IMAGE_POLICIES = ("fail", "skip")


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


# --- plans: what a dataset's rows are made from --------------------------------------


def _stamps(paths: list[Path]) -> str:
    out = []
    for p in paths:
        st = p.stat()
        out.append(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}")
    return "\n".join(out)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_")[:48] or "dataset"


def recipe_plan(recipe: DatasetRecipe, data_root: str | Path, download: bool) -> cache_mod.Plan:
    """A recipe's rows: keyed by its name, fingerprinted by the recipe and the files it is drawn from."""
    root = Path(data_root)
    if embedded.matches(recipe):
        files, version, key = [embedded.path_for(recipe.name)], "embedded", _safe(recipe.name)
    else:
        _ensure_source(recipe, root, download)
        files, version = SOURCES[recipe.source].files(root, recipe.name)
        # one key per source folder: grids reading the same recipe from two data roots don't replace each other
        key = f"{_safe(recipe.name)}-{_hash(str(root.resolve()))[:8]}"
    fields = json.dumps(asdict(recipe), sort_keys=True)
    fp = _hash(cache_mod.FORMAT, fields, version, _stamps(files))

    def build(open_rows: cache_mod.OpenRows) -> cache_mod.Described:
        arrays = SourceArrays.from_raw(load_raw(recipe, root, download=download))
        open_rows(len(arrays.labels), arrays.row_shape).put_rows(0, arrays.images)
        part = np.zeros(len(arrays.labels), dtype=np.int8)
        for k, name in enumerate(PARTS):
            if name in arrays.parts:
                part[arrays.parts[name]] = k
        return cache_mod.Described(arrays.labels, arrays.index, part, arrays.classes, arrays.source, arrays.storage)

    return cache_mod.Plan(key, fp, build)


def folder_plan(name: str, tree: folder.Tree, size: int, progress: Progress | None = None,
                cache: DatasetCacheDir | None = None) -> cache_mod.Plan:
    """An image folder's rows at one storage size: keyed by the folder's name, size and place, fingerprinted by
    every file's path, size and mtime and by the storage step."""
    stored = folder.storage(size)
    fp = folder.fingerprint(tree, json.dumps(stored.to_dict(), sort_keys=True) + cache_mod.FORMAT)[:32]
    key = f"{_safe(folder_spec(name).name)}-{size}px-{_hash(str(tree.root.resolve()))[:8]}"
    listings = tree.parts()
    labels = np.concatenate([np.asarray(listing.labels, dtype=np.int64) for listing in listings.values()])
    index = np.concatenate([np.arange(len(listing), dtype=np.int64) for listing in listings.values()])
    part = np.concatenate([np.full(len(listing), PARTS.index(p), dtype=np.int8) for p, listing in listings.items()])

    def report(done: int, total: int) -> None:
        if cache is not None:
            cache_mod.report_progress(cache, key, done, total)
        if progress is not None:
            progress(done, total)

    def build(open_rows: cache_mod.OpenRows) -> cache_mod.Described:
        files = [f for listing in listings.values() for f in listing.files]  # Paths only when decoding (a hit lists)
        rows = open_rows(len(files), (3, size, size))
        bad = decode_files(files, stored, rows.put, report)
        kept = part.copy()
        kept[list(bad)] = cache_mod.SKIPPED_ROW
        skipped = tuple((str(files[i]), bad[i]) for i in sorted(bad))
        n = len(files) - len(bad)
        skipped_note = f", {len(bad)} unreadable skipped" if bad else ""
        split_note = (f"test {folder.TEST_FRACTION:.0%} stratified seed {RECIPE_SEED}" if tree.test is None
                      else f"test from {tree.test_dir}/")
        source = (f"ImageFolder {tree.root} ({tree.layout} layout, {n} images as {size}x{size} RGB{skipped_note}; "
                  f"{split_note})")
        log.info("read image folder %s (%s): %d images, %d classes", tree.root, tree.layout, n, len(tree.classes))
        return cache_mod.Described(labels, index, kept, tree.classes, source, stored, skipped)

    return cache_mod.Plan(key, fp, build)


def source_arrays(name: str, data_root: str | Path = "data", *, download: bool = False,
                  image_size: int | None = None, on_bad_image: str = "fail", cache: DatasetCacheDir | None = None,
                  progress: Progress | None = None, waiting: Progress | None = None) -> SourceArrays:
    """The dataset's decoded rows: from the cache (decoding them there first when needed), or in memory."""
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"on_bad_image {on_bad_image!r} is not one of {', '.join(BAD_IMAGE_POLICIES)}")
    root = None
    if is_folder(name):
        tree = folder.check(name)
        root = tree.root
        plan = folder_plan(name, tree, image_size or folder.DEFAULT_SIZE, progress, cache)
    else:
        plan = recipe_plan(get_recipe(name), data_root, download)
    if cache is None:
        arrays = cache_mod.in_memory(plan)
    else:
        arrays = cache_mod.get(cache, plan, waiting)
    if arrays.skipped and on_bad_image == "fail":
        where = cache.entry(plan.key, plan.fingerprint).meta if cache is not None else None
        scan.fail_on(name, root, arrays.skipped, where)
    return arrays


# --- splits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenDataset:
    """A dataset's rows and its splits, before any image is read into a split (the trainer's view)."""

    name: str
    arrays: SourceArrays
    selection: Selection

    @property
    def classes(self) -> tuple[str, ...]:
        return self.arrays.classes

    @property
    def n_classes(self) -> int:
        return len(self.arrays.classes)

    @property
    def channels(self) -> int:
        return int(self.arrays.row_shape[0])

    @property
    def storage(self):
        return self.arrays.storage

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        return self.arrays.skipped

    @property
    def source(self) -> str:
        return f"{self.arrays.source}; {self.selection.how}"

    def split(self, name: str) -> Rows:
        return self.selection.splits()[name]

    train = property(lambda self: self.selection.train)
    val = property(lambda self: self.selection.val)
    test = property(lambda self: self.selection.test)

    def materialise(self) -> DatasetSplits:
        """The splits as in-memory tensors (what ``load_dataset`` returns)."""
        x = self.arrays.images
        made = {k: to_split(x[r.rows], r.y, r.index) for k, r in self.selection.splits().items()}
        return DatasetSplits(self.name, self.classes, made["train"], made["val"], made["test"], self.source,
                             self.storage, self.skipped)


def open_dataset(name: str, data_root: str | Path = "data", *, val_fraction: float = 0.1, seed: int = 42,
                 download: bool = False, image_size: int | None = None, train_limit: int = 0,
                 on_bad_image: str = "fail", cache: DatasetCacheDir | None = None,
                 progress: Progress | None = None, waiting: Progress | None = None) -> OpenDataset:
    """``load_dataset``'s splits as rows of the decoded dataset (memory-mapped from the cache when given).

    ``progress(done, total)`` follows this process's decoding; ``waiting(done, total)`` another process's
    decode of the same dataset that this one waits for. Either may raise to stop (a cancelled run).
    """
    arrays = source_arrays(name, data_root, download=download, image_size=image_size, on_bad_image=on_bad_image,
                           cache=cache, progress=progress, waiting=waiting)
    return OpenDataset(name, arrays, select(arrays, name, val_fraction=val_fraction, seed=seed,
                                            train_limit=train_limit))


def load_dataset(name: str, data_root: str | Path = "data", *, val_fraction: float = 0.1, seed: int = 42,
                 download: bool = False, image_size: int | None = None, train_limit: int = 0,
                 on_bad_image: str = "fail", cache: DatasetCacheDir | None = None) -> DatasetSplits:
    """Load a dataset by registry name or ``imagefolder:[NAME=]/path``, as in-memory tensors.

    Subsets and test splits are fixed by the recipe (seed 42); ``seed`` drives
    only the validation split and ``train_limit``, so runs with different
    seeds are scored on the same test images. ``image_size`` is the storage
    size of ImageFolder images (default 64); other sources keep their native
    size (resizing for the model happens per batch in engine.transforms).
    Same arguments, same bits, with or without the dataset ``cache``.
    """
    return open_dataset(name, data_root, val_fraction=val_fraction, seed=seed, download=download,
                        image_size=image_size, train_limit=train_limit, on_bad_image=on_bad_image,
                        cache=cache).materialise()


def load_recipe(recipe: DatasetRecipe, data_root: str | Path = "data", *, val_fraction: float = 0.1,
                seed: int = 42, download: bool = False, train_limit: int = 0) -> DatasetSplits:
    """load_dataset for a recipe object (tests use it with smaller n_train/n_test); no cache."""
    arrays = cache_mod.in_memory(recipe_plan(recipe, data_root, download))
    selection = select(arrays, recipe.name, val_fraction=val_fraction, seed=seed, train_limit=train_limit)
    return OpenDataset(recipe.name, arrays, selection).materialise()


def _check_class_sizes(name: str, tree: "folder.Tree", skipped: set[str]) -> None:
    """What every run would fail on after loading, said before the grid starts: a class left without training
    images (all of them unreadable and skipped), or a flat folder's class too small to carve a test split."""
    counts = [0] * len(tree.classes)
    for path, label in zip(tree.train.names, tree.train.labels):
        counts[label] += path not in skipped
    need = 2 if tree.test is None else 1
    for cls, n in zip(tree.classes, counts):
        if n < need:
            if n == 0 and skipped:
                raise DataError(f"dataset {name!r}: class {cls!r} has no readable training image left once the "
                                "unreadable ones are skipped; fix them or remove the class folder")
            raise DataError(too_few_to_carve(name, cls, n))


def check_dataset(name: str, data_root: str | Path = "data", download: bool = False, *,
                  cache: DatasetCacheDir | None = None, on_bad_image: str = "fail") -> list[tuple[str, str]]:
    """Raise DataError now if ``name`` can't be loaded later; returns the unreadable images ``skip`` leaves out.

    For an image folder every file is checked (``engine.data.scan``: headers and checksums, in threads;
    remembered in ``cache`` by the folder's fingerprint) and with ``on_bad_image = "fail"`` every unreadable
    one is named in one message. With ``download`` a missing source is fetched here, once, rather than by
    every run of a grid at the same time.
    """
    if is_folder(name):
        tree = folder.check(name)
        bad = scan.unreadable(tree, cache)
        if bad and on_bad_image == "fail":
            where = cache.scan_file(folder.fingerprint(tree, scan.FORMAT)) if cache is not None else None
            scan.fail_on(name, tree.root, bad, where)
        _check_class_sizes(name, tree, {p for p, _ in bad})
        return bad
    recipe = get_recipe(name)
    if embedded.matches(recipe):
        return []
    _ensure_source(recipe, Path(data_root), download)
    return []

