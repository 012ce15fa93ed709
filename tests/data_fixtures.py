"""Writers of small datasets in the real on-disk formats, for tests.

Each writes exactly what the official archives hold (CIFAR pickles of dicts
with bytes keys, a uint8 (N, 3072) array and label lists; idx files with
their big-endian headers; folder-per-class PNGs) and returns the arrays it
wrote, so a test can check what the loader hands back against the source.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-100's fine labels are the alphabetical list of its 100 classes.
CIFAR100_NAMES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
    "worm".split()
)


def _labels(n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(n_classes), per_class)).astype(np.int64)


def _images(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _dump(obj: object, path: Path, protocol: int) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def write_cifar10(root: Path, train_per_class: int = 20, test_per_class: int = 10, seed: int = 0,
                  protocol: int = 2) -> dict[str, np.ndarray]:
    """``<root>/cifar-10-batches-py`` with five training batches, test_batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_y, test_y = _labels(10, train_per_class, rng), _labels(10, test_per_class, rng)
    train_x, test_x = _images(len(train_y), (3, 32, 32), rng), _images(len(test_y), (3, 32, 32), rng)
    for i, part in enumerate(np.array_split(np.arange(len(train_y)), 5), start=1):
        _dump({b"batch_label": f"training batch {i} of 5".encode(), b"labels": train_y[part].tolist(),
               b"data": train_x[part].reshape(len(part), -1),
               b"filenames": [f"img_{j}.png".encode() for j in part]}, folder / f"data_batch_{i}", protocol)
    _dump({b"batch_label": b"testing batch 1 of 1", b"labels": test_y.tolist(),
           b"data": test_x.reshape(len(test_y), -1), b"filenames": [b"t.png"] * len(test_y)},
          folder / "test_batch", protocol)
    _dump({b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072},
          folder / "batches.meta", protocol)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def write_cifar100(root: Path, train_per_class: int = 20, test_per_class: int = 10, seed: int = 1,
                   protocol: int = 2) -> dict[str, np.ndarray]:
    """``<root>/cifar-100-python`` with train, test and meta (fine and coarse labels)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, per_class in (("train", train_per_class), ("test", test_per_class)):
        y = _labels(100, per_class, rng)
        x = _images(len(y), (3, 32, 32), rng)
        _dump({b"filenames": [b"x.png"] * len(y), b"batch_label": name.encode(), b"fine_labels": y.tolist(),
               b"coarse_labels": (y // 5).tolist(), b"data": x.reshape(len(y), -1)}, folder / name, protocol)
        out[f"{name}_x"], out[f"{name}_y"] = x, y
    _dump({b"fine_label_names": [n.encode() for n in CIFAR100_NAMES],
           b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}, folder / "meta", protocol)
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file: 0x0000, type 0x08 (uint8), ndim, then each dimension as a big-endian uint32."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fashion_mnist(folder: Path, train_per_class: int = 20, test_per_class: int = 10, seed: int = 2,
                        gz: bool = True) -> dict[str, np.ndarray]:
    """The four Fashion-MNIST idx files (gzipped like the official ones unless ``gz`` is False)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, key, per_class in (("train", "train", train_per_class), ("t10k", "test", test_per_class)):
        y = _labels(10, per_class, rng).astype(np.uint8)
        x = _images(len(y), (28, 28), rng)
        for kind, array, dims in (("images", x, 3), ("labels", y, 1)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-idx{dims}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        out[f"{key}_x"], out[f"{key}_y"] = x, y.astype(np.int64)
    return out


# Solid colours, one per class, so a test can tell a decoded image's class by looking at it.
COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))


def write_image_class(folder: Path, label: int, n: int, start: int = 0) -> list[Path]:
    """``n`` solid PNGs in class ``label``'s colour, each a different, non-square size."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        size = (20 + 3 * i, 30 - i % 5)  # not square, not the storage size
        path = folder / f"img_{i:03d}.png"
        Image.new("RGB", size, COLOURS[label]).save(path)
        paths.append(path)
    return paths
