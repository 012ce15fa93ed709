"""Registry of source datasets: how to check for, read and download each one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import cifar, digits, idx, mnist
from .raw import RawDataset


@dataclass(frozen=True)
class Source:
    title: str
    check: Callable[[Path, str], object]  # (root, dataset name) -> raises DataError if files are missing
    load: Callable[[Path, str, int], RawDataset]  # (root, dataset name, recipe seed) -> whole source
    download: Callable[[Path, str], None] | None  # fetch into root; None: nothing to fetch
    # (root, dataset name) -> the files load reads, and a version string of anything else it depends on:
    # what the dataset cache's fingerprint is made of
    files: Callable[[Path, str], tuple[list[Path], str]] = lambda r, d: ([], "")


def _nothing(root: Path, dataset: str) -> None:
    return None


def _cifar_files(fmt: cifar.CifarFormat) -> Callable[[Path, str], tuple[list[Path], str]]:
    def files(root: Path, dataset: str) -> tuple[list[Path], str]:
        folder = cifar.check(fmt, root, dataset)
        return [folder / name for name in fmt.files], ""

    return files


def _digits_files(root: Path, dataset: str) -> tuple[list[Path], str]:
    from importlib.metadata import version  # the bundled data ships with scikit-learn

    return [], f"scikit-learn {version('scikit-learn')}"


SOURCES: dict[str, Source] = {
    "cifar10": Source(cifar.CIFAR10.title, lambda r, d: cifar.check(cifar.CIFAR10, r, d),
                      lambda r, d, s: cifar.load(cifar.CIFAR10, r, d),
                      lambda r, d: cifar.download(cifar.CIFAR10, r, d), _cifar_files(cifar.CIFAR10)),
    "cifar100": Source(cifar.CIFAR100.title, lambda r, d: cifar.check(cifar.CIFAR100, r, d),
                       lambda r, d, s: cifar.load(cifar.CIFAR100, r, d),
                       lambda r, d: cifar.download(cifar.CIFAR100, r, d), _cifar_files(cifar.CIFAR100)),
    "fashion_mnist": Source(idx.TITLE, idx.check, lambda r, d, s: idx.load(r, d), idx.download,
                            lambda r, d: (sorted(idx.locate(r, d).values()), "")),
    "mnist": Source(mnist.TITLE, mnist.check, lambda r, d, s: mnist.load(r, d), mnist.download,
                    lambda r, d: (sorted(mnist.locate(r, d).values()), "")),
    "digits": Source("scikit-learn digits", _nothing, lambda r, d, s: digits.load(s), None, _digits_files),
}
