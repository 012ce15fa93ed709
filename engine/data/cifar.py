"""CIFAR-10 and CIFAR-100 in their standard python-pickle layout.

``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``<root>/cifar-100-python/{train, test, meta}``: dicts with ``b"data"``, uint8
(N, 3072) as R, G, B planes of 32x32, and a list of labels. Read through
:mod:`safe_pickle`, never plain ``pickle``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .raw import ArraySplit, RawDataset
from .safe_pickle import safe_load

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CifarFormat:
    title: str  # human name, for messages
    folder: str  # what the official archive unpacks to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes  # key of the label list in each batch
    names_key: bytes  # key of the class names in the meta file
    archive: str  # the official archive's file name
    torchvision_class: str  # torchvision.datasets class that knows url and md5

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


CIFAR10 = CifarFormat(
    title="CIFAR-10", folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
    meta_file="batches.meta", label_key=b"labels", names_key=b"label_names",
    archive="cifar-10-python.tar.gz", torchvision_class="CIFAR10",
)
CIFAR100 = CifarFormat(
    title="CIFAR-100", folder="cifar-100-python",
    train_files=("train",), test_files=("test",),
    meta_file="meta", label_key=b"fine_labels", names_key=b"fine_label_names",
    archive="cifar-100-python.tar.gz", torchvision_class="CIFAR100",
)

_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"


def check(fmt: CifarFormat, root: Path, dataset: str) -> Path:
    """The folder holding every file of ``fmt``; DataError listing what is missing otherwise."""
    folder = Path(root) / fmt.folder
    missing = [name for name in fmt.files if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"dataset {dataset!r} needs {fmt.title}: looked in {folder} (missing {', '.join(missing)}); "
            f"download {fmt.archive} from {_HOME} and unpack it under {root}, "
            f"or pass --download on a machine with internet"
        )
    return folder


def _read_batch(fmt: CifarFormat, path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_load(path)
    if not isinstance(batch, dict) or b"data" not in batch or fmt.label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: not a {fmt.title} batch (expected keys b'data' and {fmt.label_key!r}, got {keys})")
    data, labels = batch[b"data"], np.asarray(batch[fmt.label_key], dtype=np.int64)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32 and len(data) == len(labels)):
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: {fmt.title} data should be uint8 (N, 3072) with N labels, "
                        f"got {getattr(data, 'dtype', type(data).__name__)} {shape} and {len(labels)} labels")
    # Row-major R, G, B planes: a plain reshape gives (N, C, H, W) without copying.
    return data.reshape(-1, 3, 32, 32), labels


def _read_split(fmt: CifarFormat, folder: Path, names: tuple[str, ...]) -> ArraySplit:
    parts = [_read_batch(fmt, folder / name) for name in names]
    x = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    y = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    return ArraySplit.whole(x, y)


def _read_names(fmt: CifarFormat, folder: Path) -> tuple[str, ...]:
    path = folder / fmt.meta_file
    meta = safe_load(path)
    if not isinstance(meta, dict) or fmt.names_key not in meta:
        raise DataError(f"{path}: not a {fmt.title} meta file (no {fmt.names_key!r})")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[fmt.names_key])


def load(fmt: CifarFormat, root: Path, dataset: str) -> RawDataset:
    """The whole of ``fmt`` (train and test, all classes) as uint8 arrays."""
    folder = check(fmt, root, dataset)
    classes = _read_names(fmt, folder)
    train = _read_split(fmt, folder, fmt.train_files)
    test = _read_split(fmt, folder, fmt.test_files)
    for split, files in ((train, fmt.train_files), (test, fmt.test_files)):
        if len(split.y) and not 0 <= split.y.min() <= split.y.max() < len(classes):
            raise DataError(f"{folder}: {'/'.join(files)} has labels outside 0..{len(classes) - 1} "
                            f"({fmt.meta_file} names {len(classes)} classes)")
    log.info("read %s from %s: %d train, %d test", fmt.title, folder, len(train.y), len(test.y))
    return RawDataset(train, test, classes, f"{fmt.title} from {folder}")


def download(fmt: CifarFormat, root: Path, dataset: str) -> None:
    """Fetch and unpack the official archive into ``root`` (md5-checked by torchvision).

    torchvision's dataset classes would unpickle the files with plain pickle
    after downloading; only its download helper is used here.
    """
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(tvd, fmt.torchvision_class)
    log.info("downloading %s from %s into %s", fmt.title, cls.url, root)
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(cls.url, download_root=str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as exc:  # offline, DNS, HTTP, bad md5: all mean "get it by hand"
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(
            f"dataset {dataset!r}: download of {fmt.title} from {cls.url} failed ({reason}); "
            f"download {fmt.archive} by hand from {_HOME} and unpack it under {root}"
        ) from None
