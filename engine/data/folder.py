"""A user's folder-per-class tree ("imagefolder:/path").

Two layouts: ``train/`` plus ``test/`` and/or ``val/``, each with one folder
per class; or class folders at the top, in which case a seeded, stratified
20% test split is carved out. Images are decoded with Pillow and stored at
load time by ``engine.preprocess.store`` (EXIF orientation, RGB, bicubic centre
crop to one square storage size), so the whole set is a single uint8 tensor
like every other dataset; that storage step is recorded in the checkpoint,
and ``predict`` repeats it on image files. Class names are the sorted folder names, as torchvision does.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..preprocess import Storage, store
from .errors import DataError
from .raw import ArraySplit, RawDataset

log = logging.getLogger(__name__)

PREFIX = "imagefolder:"
DEFAULT_SIZE = 64
TEST_FRACTION = 0.2
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_LAYOUT_HINT = "expected class folders (DIR/<class>/*.png) or DIR/train/<class>/... with DIR/test/<class>/..."


@dataclass(frozen=True)
class Listing:
    files: tuple[Path, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class Tree:
    root: Path
    classes: tuple[str, ...]
    train: Listing  # flat layout: every image
    test: Listing | None  # None: carve it from train
    val: Listing | None  # None: carve it from train
    test_dir: str = ""  # "test" or "val": the folder that serves as test

    @property
    def layout(self) -> str:
        if self.test is None:
            return "flat"
        return f"train/{self.test_dir}" + ("/val" if self.val is not None else "")


def parse(name: str) -> Path:
    return Path(name[len(PREFIX):]).expanduser()


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).parts
        if path.suffix.lower() in SUFFIXES and not any(p.startswith(".") for p in rel) and path.is_file():
            found.append(path)
    return sorted(found)


def _list(folder: Path, classes: tuple[str, ...], dataset: str, require_all: bool) -> Listing:
    present = {p.name: p for p in _visible_dirs(folder)}
    extra = sorted(set(present) - set(classes))
    if extra:
        raise DataError(f"dataset {dataset!r}: {folder} has class folder(s) {', '.join(extra)} "
                        f"that {folder.parent / 'train'} lacks; every class needs training images")
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        if cls not in present:
            if require_all:
                raise DataError(f"dataset {dataset!r}: class folder {folder / cls} is missing")
            continue
        images = _images(present[cls])
        if not images:
            raise DataError(f"dataset {dataset!r}: class folder {present[cls]} holds no images "
                            f"(looked for {', '.join(sorted(SUFFIXES))}); add images or remove the folder")
        files += images
        labels += [label] * len(images)
    return Listing(tuple(files), tuple(labels))


def scan(root: Path, dataset: str) -> Tree:
    """Find the layout, the classes and every image path; decodes nothing (cheap pre-flight)."""
    if not root.is_dir():
        raise DataError(f"dataset {dataset!r}: folder {root} doesn't exist; {_LAYOUT_HINT}")
    top = {p.name: p for p in _visible_dirs(root)}
    held_out = {k: top[k] for k in ("test", "val") if k in top}
    if "train" in top and held_out:
        classes = tuple(p.name for p in _visible_dirs(top["train"]))
        if not classes:
            raise DataError(f"dataset {dataset!r}: {top['train']} has no class folders; {_LAYOUT_HINT}")
        train = _list(top["train"], classes, dataset, require_all=True)
        lists = {k: _list(v, classes, dataset, require_all=False) for k, v in held_out.items()}
        # Only val/ next to train/: it is the held-out set, so it serves as test.
        test_dir = "test" if "test" in lists else "val"
        val = lists.get("val") if test_dir == "test" else None
        if not lists[test_dir].files:
            raise DataError(f"dataset {dataset!r}: {held_out[test_dir]} holds no class folders with images; "
                            f"{_LAYOUT_HINT}")
        return Tree(root, classes, train, lists[test_dir], val, test_dir)
    classes = tuple(top)
    if not classes:
        raise DataError(f"dataset {dataset!r}: {root} has no class folders; {_LAYOUT_HINT}")
    return Tree(root, classes, _list(root, classes, dataset, require_all=True), None, None)


def storage(size: int) -> Storage:
    """How this loader stores every image: recorded in checkpoints so ``predict`` repeats it on files."""
    return Storage(size=size)


def _read(path: Path, stored: Storage, dataset: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return store(im, stored)  # EXIF orientation, RGB, bicubic centre crop: engine.preprocess
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(f"dataset {dataset!r}: can't read image {path} ({reason}); fix or remove it") from None


def _decode(listing: Listing, size: int, dataset: str) -> ArraySplit:
    stored = storage(size)
    x = np.empty((len(listing.files), 3, size, size), dtype=np.uint8)
    # Pillow decodes with the GIL released; threads give a real speed-up on big folders.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, img in enumerate(pool.map(lambda p: _read(p, stored, dataset), listing.files)):
            x[i] = img
    return ArraySplit.whole(x, np.asarray(listing.labels, dtype=np.int64))


def load(name: str, image_size: int | None, seed: int) -> tuple[RawDataset, ArraySplit | None]:
    """The tree as (train/test dataset, its own val split or None). ``index`` is the position in the
    sorted listing of the split's folder (flat layout: of the whole tree)."""
    root = parse(name)
    size = image_size or DEFAULT_SIZE
    tree = scan(root, name)
    train = _decode(tree.train, size, name)
    if tree.test is None:
        from sklearn.model_selection import train_test_split

        counts = np.bincount(train.y, minlength=len(tree.classes))
        if counts.min() < 2:
            small = tree.classes[int(counts.argmin())]
            raise DataError(f"dataset {name!r}: class {small!r} has {counts.min()} image(s); a flat folder needs "
                            f"at least 2 per class to carve a test split (or use train/ and test/ folders)")
        try:
            keep, held = train_test_split(np.arange(len(train.y)), test_size=TEST_FRACTION, stratify=train.y,
                                          random_state=seed)
        except ValueError as exc:
            raise DataError(f"dataset {name!r}: can't carve a stratified test split ({exc})") from None
        train, test = train.take(np.sort(keep)), train.take(np.sort(held))
        split_note = f"test {TEST_FRACTION:.0%} stratified seed {seed}"
    else:
        test = _decode(tree.test, size, name)
        split_note = f"test from {tree.test_dir}/"
    val = _decode(tree.val, size, name) if tree.val is not None else None
    n = len(tree.train.files) + len(tree.test.files if tree.test else ()) + len(tree.val.files if tree.val else ())
    log.info("read image folder %s (%s): %d images, %d classes", root, tree.layout, n, len(tree.classes))
    return (RawDataset(train, test, tree.classes,
                       f"ImageFolder {root} ({tree.layout} layout, {n} images as {size}x{size} RGB; {split_note})",
                       storage(size)),
            val)


def check(name: str) -> None:
    scan(parse(name), name)
