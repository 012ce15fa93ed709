"""MNIST: idx files in MNIST's own folders (never the Fashion-MNIST ones), the same clear error as CIFAR's."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from engine.data import DataError, check_dataset, dataset_names, load_dataset, mnist

from .data_fixtures import idx_bytes, write_fashion_mnist


def write_mnist(folder: Path, train_per_class: int = 12, test_per_class: int = 5, gz: bool = True, seed: int = 3):
    """The four MNIST idx files (same names and format as Fashion-MNIST's)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, key, per_class in (("train", "train", train_per_class), ("t10k", "test", test_per_class)):
        y = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        x = rng.integers(0, 256, size=(len(y), 28, 28), dtype=np.uint8)
        for kind, array, dims in (("images", x, 3), ("labels", y, 1)):
            name = f"{prefix}-{kind}-idx{dims}-ubyte"
            data = idx_bytes(array)
            (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
        out[f"{key}_x"], out[f"{key}_y"] = x, y.astype(np.int64)
    return out


@pytest.mark.parametrize("layout, gz", [("mnist", True), ("MNIST/raw", False)])
def test_mnist_loads_from_its_folders(tmp_path, layout, gz):
    src = write_mnist(tmp_path / layout, gz=gz)
    assert "mnist" in dataset_names()
    check_dataset("mnist", tmp_path)
    ds = load_dataset("mnist", tmp_path, val_fraction=0.1)
    assert ds.classes == tuple(str(d) for d in range(10)) and ds.channels == 1
    assert tuple(ds.test.x.shape) == (50, 1, 28, 28)
    np.testing.assert_array_equal(ds.test.x[:, 0].numpy(), src["test_x"])
    np.testing.assert_array_equal(ds.test.y.numpy(), src["test_y"])
    assert len(ds.train) + len(ds.val) == 120
    assert "MNIST from" in ds.source


def test_missing_mnist_is_one_clear_line(tmp_path):
    write_fashion_mnist(tmp_path)  # Fashion-MNIST's files at the root share MNIST's names: not taken for MNIST
    with pytest.raises(DataError) as err:
        check_dataset("mnist", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "dataset 'mnist' needs MNIST" in msg
    assert str(tmp_path / "mnist") in msg and str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "--download" in msg and "yann.lecun.com" in msg
    with pytest.raises(DataError, match="'mnist' needs MNIST"):
        load_dataset("mnist", tmp_path)


def test_corrupt_mnist_file_names_mnist_home(tmp_path):
    write_mnist(tmp_path / "mnist")
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 2), np.uint8))))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    assert "not an idx file" in str(err.value) and "yann.lecun.com" in str(err.value)
    assert "fashion-mnist" not in str(err.value)


def test_download_goes_through_torchvision_mirrors(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_download(url, root, filename, md5):
        calls.append((url, filename, md5))
        if len(calls) == 1:
            raise OSError("[Errno -3] Temporary failure in name resolution")  # first mirror down: next one
        if filename.startswith("train-images"):
            write_mnist(Path(root))  # writes all four at once

    monkeypatch.setattr(tvu, "download_url", fake_download)
    check_dataset("mnist", tmp_path, download=True)
    assert calls[0][0] != calls[1][0] and calls[0][1] == calls[1][1] == "train-images-idx3-ubyte.gz"
    assert {c[1] for c in calls} == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert all(c[2] for c in calls)  # md5-checked
    assert len(load_dataset("mnist", tmp_path).test) == 50


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(DataError) as err:
        check_dataset("mnist", tmp_path, download=True)
    msg = str(err.value)
    assert "download of MNIST file train-images-idx3-ubyte.gz failed" in msg and "name resolution" in msg
    assert str(tmp_path / "mnist") in msg and mnist.TITLE == "MNIST"
