"""MNIST handwritten digits, in the same idx format as Fashion-MNIST (gzipped or not).

The files share Fashion-MNIST's names (``train-images-idx3-ubyte.gz``, ...), so
MNIST is looked for only in folders named for it, never in the data root
itself where the Fashion-MNIST files may lie: ``<root>/mnist`` and torchvision's
``<root>/MNIST/raw``. No Debian package ships it; ``--download`` fetches it
through torchvision's mirrors (md5-checked) on a machine with internet.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import idx
from .errors import DataError
from .raw import ArraySplit, RawDataset

log = logging.getLogger(__name__)

TITLE = "MNIST"
FILES = idx.FILES  # the same four names as Fashion-MNIST
CLASSES = tuple(str(d) for d in range(10))
SYSTEM_DIRS: tuple[Path, ...] = ()  # a module global like idx.SYSTEM_DIRS (no system package exists today)
_HOME = "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"


def candidate_dirs(root: Path) -> list[Path]:
    root = Path(root)
    return [root / "mnist", root / "MNIST" / "raw", *SYSTEM_DIRS]


def locate(root: Path, dataset: str) -> dict[str, Path]:
    """The four files, all from the first folder that has all of them; DataError otherwise."""
    dirs = candidate_dirs(root)
    for folder in dirs:
        found = {key: idx._find(folder, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    raise DataError(
        f"dataset {dataset!r} needs {TITLE}: looked in {', '.join(str(d) for d in dirs)} "
        f"(expected {', '.join(s + '.gz' for s in FILES.values())}, gzipped or not); "
        f"download them from {_HOME} into {Path(root) / 'mnist'}, or pass --download on a machine with internet"
    )


def _read_split(images: Path, labels: Path) -> ArraySplit:
    x, y = idx.read_idx(images, 3, home=_HOME), idx.read_idx(labels, 1, home=_HOME)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) and y.max() >= len(CLASSES):
        raise DataError(f"{labels}: label {int(y.max())} outside 0..{len(CLASSES) - 1}")
    return ArraySplit.whole(x[:, None], y)  # grey: C == 1


def load(root: Path, dataset: str) -> RawDataset:
    """All of MNIST (60,000 train, 10,000 test, 28x28 grey)."""
    files = locate(root, dataset)
    train = _read_split(files["train_images"], files["train_labels"])
    test = _read_split(files["test_images"], files["test_labels"])
    folder = files["train_images"].parent
    log.info("read %s from %s: %d train, %d test", TITLE, folder, len(train.y), len(test.y))
    return RawDataset(train, test, CLASSES, f"{TITLE} from {folder}")


def check(root: Path, dataset: str) -> None:
    locate(root, dataset)


def download(root: Path, dataset: str) -> None:
    """Fetch the four .gz files into ``<root>/MNIST/raw`` (torchvision's layout and mirrors, md5-checked)."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    folder = Path(root) / "MNIST" / "raw"
    errors = []
    for filename, md5 in MNIST.resources:
        for mirror in MNIST.mirrors:
            try:
                download_url(mirror + filename, root=str(folder), filename=filename, md5=md5)
                break
            except Exception as exc:  # offline, HTTP error, bad md5: try the next mirror
                errors.append(" ".join(str(exc).split())[:120] or type(exc).__name__)
        else:
            raise DataError(
                f"dataset {dataset!r}: download of {TITLE} file {filename} failed ({errors[-1]}); "
                f"download the four .gz files by hand from {_HOME} into {Path(root) / 'mnist'}"
            )
    log.info("downloaded %s into %s", TITLE, folder)
