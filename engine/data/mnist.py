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
from .raw import RawDataset

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


def load(root: Path, dataset: str) -> RawDataset:
    """All of MNIST (60,000 train, 10,000 test, 28x28 grey)."""
    return idx.load_files(locate(root, dataset), CLASSES, TITLE, _HOME)


def check(root: Path, dataset: str) -> None:
    locate(root, dataset)


def download(root: Path, dataset: str) -> None:
    """Fetch the four .gz files into ``<root>/MNIST/raw`` (torchvision's layout and mirrors, md5-checked)."""
    from torchvision.datasets import MNIST

    idx.download_from(MNIST, Path(root) / "MNIST" / "raw", dataset, TITLE,
                      f"download the four .gz files by hand from {_HOME} into {Path(root) / 'mnist'}")
