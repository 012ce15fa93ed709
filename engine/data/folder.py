"""A user's folder-per-class tree ("imagefolder:[NAME=]/path").

Two layouts: ``train/`` plus ``test/`` and/or ``val/``, each with one folder
per class; or class folders at the top, in which case a seeded, stratified
20% test split is carved out (``engine.data.select``). Images are decoded with
Pillow and stored by ``engine.preprocess.store`` (EXIF orientation, RGB,
bicubic centre crop to one square storage size), once per source and storage
size, into the dataset cache (``engine.data.decode``); that storage step is
recorded in the checkpoint, and ``predict`` repeats it on image files. Class
names are the sorted folder names, as torchvision does.

The scan here reads no image: it lists the files with their sizes and
modification times, which is also what the tree's fingerprint is made of.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..preprocess import Storage
from .errors import DataError
from .names import PREFIX, folder_spec

DEFAULT_SIZE = 64
TEST_FRACTION = 0.2
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_LAYOUT_HINT = "expected class folders (DIR/<class>/*.png) or DIR/train/<class>/... with DIR/test/<class>/..."

__all__ = ["DEFAULT_SIZE", "PREFIX", "SUFFIXES", "TEST_FRACTION", "Listing", "Tree", "fingerprint", "parse", "scan",
           "storage"]


@dataclass(frozen=True)
class Listing:
    # paths as strings: a run that finds its folder in the cache lists and fingerprints it, and making 100k
    # Path objects would cost more than the listing itself; ``files`` makes them when something reads images
    names: tuple[str, ...]
    labels: tuple[int, ...]
    stamps: tuple[tuple[int, int], ...] = ()  # (size in bytes, mtime in ns) of each file, for the fingerprint

    @cached_property
    def files(self) -> tuple[Path, ...]:
        return tuple(map(Path, self.names))

    def __len__(self) -> int:
        return len(self.names)


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

    def parts(self) -> dict[str, Listing]:
        """The listings in the order their rows are stored: train, then test and val when the tree has them."""
        out = {"train": self.train}
        if self.test is not None:
            out["test"] = self.test
        if self.val is not None:
            out["val"] = self.val
        return out

    @property
    def n_images(self) -> int:
        return sum(len(p) for p in self.parts().values())


def parse(name: str) -> Path:
    """The folder of ``imagefolder:[NAME=]PATH``."""
    return Path(folder_spec(name).path).expanduser()


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _walk(folder: Path, found: list[tuple[str, int, int]], seen: set[tuple[int, int]]) -> None:
    """Every visible image file under ``folder`` (symlinks followed, once each; hidden names skipped) with its
    size and mtime (paths as strings: a 100k-image folder is listed on every run's start)."""
    try:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
            return
        seen.add((st.st_dev, st.st_ino))
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DataError(f"can't list {folder} ({exc.strerror or exc})") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                _walk(Path(entry.path), found, seen)
            elif entry.name[entry.name.rfind("."):].lower() in SUFFIXES and entry.is_file():  # the name's suffix
                st = entry.stat()
                found.append((entry.path, st.st_size, st.st_mtime_ns))
        except OSError:  # a broken link or a file gone meanwhile: not an image we can list
            continue


def _images(folder: Path) -> list[tuple[str, int, int]]:
    found: list[tuple[str, int, int]] = []
    _walk(folder, found, set())
    # Path order (part by part, as torchvision's ImageFolder and earlier versions sort), without comparing Paths
    found.sort(key=lambda f: f[0].split(os.sep))
    return found


def _list(folder: Path, classes: tuple[str, ...], dataset: str, require_all: bool) -> Listing:
    present = {p.name: p for p in _visible_dirs(folder)}
    extra = sorted(set(present) - set(classes))
    if extra:
        raise DataError(f"dataset {dataset!r}: {folder} has class folder(s) {', '.join(extra)} "
                        f"that {folder.parent / 'train'} lacks; every class needs training images")
    files: list[str] = []
    labels: list[int] = []
    stamps: list[tuple[int, int]] = []
    for label, cls in enumerate(classes):
        if cls not in present:
            if require_all:
                raise DataError(f"dataset {dataset!r}: class folder {folder / cls} is missing")
            continue
        images = _images(present[cls])
        if not images:
            raise DataError(f"dataset {dataset!r}: class folder {present[cls]} holds no images "
                            f"(looked for {', '.join(sorted(SUFFIXES))}); add images or remove the folder")
        files += [p for p, _, _ in images]
        stamps += [(size, mtime) for _, size, mtime in images]
        labels += [label] * len(images)
    return Listing(tuple(files), tuple(labels), tuple(stamps))


def scan(root: Path, dataset: str) -> Tree:
    """Find the layout, the classes and every image path with its size and mtime; decodes nothing."""
    tree = _scan(root, dataset)
    if len(tree.classes) < 2:  # one class trains to 100% on nothing: a folder given one level too deep?
        raise DataError(f"dataset {dataset!r}: {root} has one class folder ({tree.classes[0]!r}); a classifier "
                        f"needs at least 2 (point at the folder that holds the class folders); {_LAYOUT_HINT}")
    return tree


def _scan(root: Path, dataset: str) -> Tree:
    if root.is_file():
        raise DataError(f"dataset {dataset!r}: {root} is a file, not a folder; {_LAYOUT_HINT}")
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
        if not lists[test_dir].names:
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


def fingerprint(tree: Tree, extra: str = "") -> str:
    """A hash of what decoding the tree depends on: its layout, classes, and every file's path (relative to
    the tree), size and mtime; ``extra`` adds the rest (storage step, format version)."""
    root = os.path.join(str(tree.root), "")
    lines = [f"{tree.layout}\0{'/'.join(tree.classes)}\0{extra}\0"]
    for part, listing in tree.parts().items():
        lines.append(f"[{part}]")
        for name, label, (size, mtime) in zip(listing.names, listing.labels, listing.stamps):
            rel = name[len(root):] if name.startswith(root) else str(Path(name).relative_to(tree.root))
            lines.append(f"{rel}\0{label}\0{size}\0{mtime}\n")
    return hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def check(name: str) -> Tree:
    return scan(parse(name), name)
