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


def _nothing(root: Path, dataset: str) -> None:
    return None


SOURCES: dict[str, Source] = {
    "cifar10": Source(cifar.CIFAR10.title, lambda r, d: cifar.check(cifar.CIFAR10, r, d),
                      lambda r, d, s: cifar.load(cifar.CIFAR10, r, d),
                      lambda r, d: cifar.download(cifar.CIFAR10, r, d)),
    "cifar100": Source(cifar.CIFAR100.title, lambda r, d: cifar.check(cifar.CIFAR100, r, d),
                       lambda r, d, s: cifar.load(cifar.CIFAR100, r, d),
                       lambda r, d: cifar.download(cifar.CIFAR100, r, d)),
    "fashion_mnist": Source(idx.TITLE, idx.check, lambda r, d, s: idx.load(r, d), idx.download),
    "mnist": Source(mnist.TITLE, mnist.check, lambda r, d, s: mnist.load(r, d), mnist.download),
    "digits": Source("scikit-learn digits", _nothing, lambda r, d, s: digits.load(s), None),
}
