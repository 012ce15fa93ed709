"""Fashion-MNIST in the idx format, gzipped or not.

An idx file is a big-endian header (two zero bytes, a type code, the number
of dimensions, one uint32 per dimension) followed by the raw values. Images
are 0x00000803 (uint8, 3 dims), labels 0x00000801 (uint8, 1 dim).
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError
from .raw import ArraySplit, RawDataset

log = logging.getLogger(__name__)

TITLE = "Fashion-MNIST"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Lower case like CIFAR's own names; order is the label order.
CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle boot")
# Debian's dataset-fashion-mnist package; a module global so tests can hide it.
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
_HOME = "https://github.com/zalandoresearch/fashion-mnist"
_MAGIC = {3: 0x00000803, 1: 0x00000801}


def candidate_dirs(root: Path) -> list[Path]:
    """Where the files are looked for, in order: our layout, torchvision's, the root, Debian's."""
    root = Path(root)
    return [root / "fashion-mnist", root / "FashionMNIST" / "raw", root, *SYSTEM_DIRS]


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def locate(root: Path, dataset: str) -> dict[str, Path]:
    """The four files, all from the first folder that has all of them; DataError otherwise."""
    dirs = candidate_dirs(root)
    for folder in dirs:
        found = {key: _find(folder, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    raise DataError(
        f"dataset {dataset!r} needs {TITLE}: looked in {', '.join(str(d) for d in dirs)} "
        f"(expected {', '.join(s + '.gz' for s in FILES.values())}, gzipped or not); "
        f"apt-get install dataset-fashion-mnist, or download them from {_HOME} into {Path(root) / 'fashion-mnist'}, "
        f"or pass --download on a machine with internet"
    )


def read_idx(path: Path, ndim: int, home: str = _HOME) -> np.ndarray:
    """One idx file as a uint8 array with ``ndim`` dimensions; DataError naming the file if it isn't one
    (``home``: where a fresh copy comes from; MNIST shares the format)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: can't read it ({exc}); fetch a fresh copy from {home}") from None
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != _MAGIC[ndim] or len(raw) < header:
        got = "too short" if magic is None else f"magic 0x{magic:08x}"
        raise DataError(f"{path}: not an idx file of {ndim}-d uint8 (expected magic 0x{_MAGIC[ndim]:08x}, "
                        f"{got}); fetch a fresh copy from {home}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataError(f"{path}: header says {dims} = {size} bytes of data, the file has {len(raw) - header}; "
                        f"it is truncated or corrupt, fetch a fresh copy from {home}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_split(images: Path, labels: Path, classes: tuple[str, ...], home: str = _HOME) -> ArraySplit:
    """One split of an idx dataset (Fashion-MNIST, MNIST): grey images (N, 1, H, W) and labels in 0..classes-1."""
    x, y = read_idx(images, 3, home=home), read_idx(labels, 1, home=home)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) and y.max() >= len(classes):
        raise DataError(f"{labels}: label {int(y.max())} outside 0..{len(classes) - 1}")
    return ArraySplit.whole(x[:, None], y)  # grey: C == 1


def load_files(files: dict[str, Path], classes: tuple[str, ...], title: str, home: str = _HOME) -> RawDataset:
    """The whole dataset from its four located files."""
    train = read_split(files["train_images"], files["train_labels"], classes, home)
    test = read_split(files["test_images"], files["test_labels"], classes, home)
    folder = files["train_images"].parent
    log.info("read %s from %s: %d train, %d test", title, folder, len(train.y), len(test.y))
    return RawDataset(train, test, classes, f"{title} from {folder}")


def load(root: Path, dataset: str) -> RawDataset:
    """All of Fashion-MNIST (60,000 train, 10,000 test, 28x28 grey)."""
    return load_files(locate(root, dataset), CLASSES, TITLE)


def check(root: Path, dataset: str) -> None:
    locate(root, dataset)


def download_from(source, folder: Path, dataset: str, title: str, by_hand: str) -> None:
    """Fetch a torchvision idx dataset's four .gz files into ``folder`` (its mirrors in turn, md5-checked);
    ``by_hand`` ends the message when every mirror fails."""
    from torchvision.datasets.utils import download_url

    errors = []
    for filename, md5 in source.resources:
        for mirror in source.mirrors:
            try:
                download_url(mirror + filename, root=str(folder), filename=filename, md5=md5)
                break
            except Exception as exc:  # offline, HTTP error, bad md5: try the next mirror
                errors.append(" ".join(str(exc).split())[:120] or type(exc).__name__)
        else:
            raise DataError(f"dataset {dataset!r}: download of {title} file {filename} failed ({errors[-1]}); "
                            f"{by_hand}")
    log.info("downloaded %s into %s", title, folder)


def download(root: Path, dataset: str) -> None:
    """Fetch the four .gz files into ``<root>/FashionMNIST/raw`` (torchvision's layout, md5-checked)."""
    from torchvision.datasets import FashionMNIST

    download_from(FashionMNIST, Path(root) / "FashionMNIST" / "raw", dataset, TITLE,
                  f"apt-get install dataset-fashion-mnist, or download the four .gz files by hand from {_HOME} "
                  f"into {Path(root) / 'fashion-mnist'}")
