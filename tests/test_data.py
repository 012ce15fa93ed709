"""The data layer against small files in the real formats (tests/data_fixtures.py)."""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import (
    DATASETS,
    DataError,
    DatasetSplits,
    UnknownDatasetError,
    check_dataset,
    dataset_names,
    embedded,
    idx,
    load_dataset,
)
from engine.data.load import load_raw, load_recipe
from engine.data.recipes import balanced_counts
from engine.data.safe_pickle import safe_load
from tests.data_fixtures import (
    CIFAR10_NAMES,
    COLOURS,
    idx_bytes,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_image_class,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """One data root with CIFAR-10 (20/10 per class) and CIFAR-100 (20/10 per class)."""
    root = tmp_path_factory.mktemp("cifar")
    return root, write_cifar10(root), write_cifar100(root)


@pytest.fixture()
def no_system_data(monkeypatch, tmp_path):
    """Hide Debian's Fashion-MNIST and the embedded npz, so only what a test writes exists."""
    monkeypatch.setattr(idx, "SYSTEM_DIRS", ())
    empty = tmp_path / "no-embedded"
    empty.mkdir()
    monkeypatch.setattr(embedded, "EMBEDDED_DIR", empty)


def small(name: str, n_train: int, n_test: int):
    return replace(DATASETS[name], n_train=n_train, n_test=n_test)


def per_class(y: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(y, minlength=k).tolist()


def assert_well_formed(ds: DatasetSplits, channels: int, side: int) -> None:
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64 and split.index.dtype == torch.int64
        assert split.x.shape[1:] == (channels, side, side)
        assert split.x.is_contiguous() and split.x.device.type == "cpu"
        assert len(split.x) == len(split.y) == len(split.index)
        if len(split.y):
            assert 0 <= int(split.y.min()) and int(split.y.max()) < len(ds.classes)


# ---------------------------------------------------------------- safe pickle

class _Evil:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_pickle_refuses_code(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(f"touch {marker}")}, protocol=protocol))
    with pytest.raises(DataError) as err:
        safe_load(path)
    assert "system" in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_pickle_reads_numpy_dicts(tmp_path, protocol):
    data = np.arange(24, dtype=np.uint8).reshape(2, 12)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [3, 1], b"name": b"x", b"e": b""}, protocol=protocol))
    got = safe_load(path)
    assert got[b"labels"] == [3, 1] and got[b"name"] == b"x" and got[b"e"] == b""
    np.testing.assert_array_equal(got[b"data"], data)
    assert got[b"data"].dtype == np.uint8


def test_malicious_cifar_batch_is_refused(tmp_path):
    write_cifar10(tmp_path, train_per_class=2, test_per_class=1)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(pickle.dumps({b"data": _Evil("true"), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="data_batch_3.*refusing to unpickle"):
        load_dataset("cifar10", tmp_path)


def test_cifar_batch_with_wrong_content_names_file(tmp_path):
    write_cifar10(tmp_path, train_per_class=2, test_per_class=1)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((3, 10), np.uint8), b"labels": [0, 0, 0]}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch.*uint8 \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------- registry

def test_registry_names_and_seed_recipes():
    assert dataset_names() == sorted(DATASETS)
    assert {"transport", "animals", "footwear", "people", "cifar10", "cifar100", "fashion_mnist",
            "digits"} <= set(DATASETS)
    spec = {"transport": ("cifar10", (0, 1, 8, 9), 8000, 2000), "animals": ("cifar10", (2, 3, 4, 5, 6, 7), 10000, 2500),
            "footwear": ("fashion_mnist", (5, 7, 9), 10000, 2500),
            "people": ("cifar100", (2, 11, 35, 46, 98), 2500, 500)}
    for name, (source, ids, n_train, n_test) in spec.items():
        r = DATASETS[name]
        assert (r.source, r.class_ids, r.n_train, r.n_test, r.seed) == (source, ids, n_train, n_test, 42)


def test_unknown_dataset_suggests():
    with pytest.raises(ValueError) as err:
        load_dataset("transprot")
    assert isinstance(err.value, UnknownDatasetError) and isinstance(err.value, DataError)
    msg = str(err.value)
    assert "'transprot' not found" in msg and "did you mean 'transport'" in msg and "animals" in msg
    with pytest.raises(UnknownDatasetError):
        check_dataset("cifar1000", "nowhere")


def test_balanced_counts():
    assert balanced_counts([100] * 6, 10000 // 100) == [17, 17, 17, 17, 16, 16]
    assert balanced_counts([5, 100, 100], 30) == [5, 13, 12]  # a short class gives its share away
    assert balanced_counts([2, 3], 10) == [2, 3]  # can't give more than there is
    assert balanced_counts([4, 4], 0) == [0, 0]


# ---------------------------------------------------------------- CIFAR recipes

def test_transport_recipe(cifar_root):
    root, c10, _ = cifar_root
    ds = load_recipe(small("transport", 40, 20), root, val_fraction=0.25)
    assert ds.name == "transport" and ds.classes == ("airplane", "automobile", "ship", "truck")
    assert_well_formed(ds, 3, 32)
    assert per_class(torch.cat([ds.train.y, ds.val.y]), 4) == [10, 10, 10, 10]
    assert sum(per_class(ds.val.y, 4)) == 10 and set(per_class(ds.val.y, 4)) == {2, 3}  # stratified 25%
    assert per_class(ds.test.y, 4) == [5, 5, 5, 5]
    ids = np.array([0, 1, 8, 9])
    for split, xs, ys in ((ds.train, c10["train_x"], c10["train_y"]), (ds.val, c10["train_x"], c10["train_y"]),
                          (ds.test, c10["test_x"], c10["test_y"])):
        src = split.index.numpy()
        np.testing.assert_array_equal(split.x.numpy(), xs[src])  # the image is the source image at index
        np.testing.assert_array_equal(ids[split.y.numpy()], ys[src])  # label k is the recipe's k-th source id
    assert "CIFAR-10" in ds.source and "cifar-10-batches-py" in ds.source and "\n" not in ds.source


def test_animals_recipe_uneven_total(cifar_root):
    root, c10, _ = cifar_root
    ds = load_recipe(small("animals", 45, 15), root, val_fraction=0.0)
    assert ds.classes == ("bird", "cat", "deer", "dog", "frog", "horse")
    assert per_class(ds.train.y, 6) == [8, 8, 8, 7, 7, 7]  # 45 over 6: the first classes take the remainder
    assert per_class(ds.test.y, 6) == [3, 3, 3, 2, 2, 2]
    assert len(ds.val) == 0 and ds.val.x.shape == (0, 3, 32, 32)
    np.testing.assert_array_equal(np.array([2, 3, 4, 5, 6, 7])[ds.train.y.numpy()], c10["train_y"][ds.train.index])


def test_people_recipe_takes_all_there_is(cifar_root):
    root, _, c100 = cifar_root
    ds = load_recipe(small("people", 100, 50), root, val_fraction=0.1)
    assert ds.classes == ("baby", "boy", "girl", "man", "woman")
    assert_well_formed(ds, 3, 32)
    wanted = np.isin(c100["train_y"], [2, 11, 35, 46, 98])
    got = np.sort(torch.cat([ds.train.index, ds.val.index]).numpy())
    np.testing.assert_array_equal(got, np.flatnonzero(wanted))  # every image of the five classes, once
    assert per_class(ds.val.y, 5) == [2, 2, 2, 2, 2]
    np.testing.assert_array_equal(ds.test.x.numpy(), c100["test_x"][ds.test.index.numpy()])


def test_recipe_needing_more_than_source_has(cifar_root):
    root, _, _ = cifar_root
    with pytest.raises(DataError, match="source has 20 images of class 2, the recipe needs 21"):
        load_recipe(small("people", 105, 50), root)


def test_full_cifar_sources(cifar_root):
    root, c10, c100 = cifar_root
    ds = load_dataset("cifar10", root, val_fraction=0.1)
    assert ds.classes == CIFAR10_NAMES
    assert len(ds.train) + len(ds.val) == 200 and len(ds.test) == 100
    np.testing.assert_array_equal(ds.test.x.numpy(), c10["test_x"])  # test untouched, in source order
    np.testing.assert_array_equal(ds.test.y.numpy(), c10["test_y"])
    np.testing.assert_array_equal(ds.test.index.numpy(), np.arange(100))
    ds100 = load_dataset("cifar100", root)
    assert len(ds100.classes) == 100 and ds100.classes[98] == "woman"
    assert per_class(ds100.val.y, 100) == [2] * 100
    np.testing.assert_array_equal(ds100.train.y.numpy(), c100["train_y"][ds100.train.index.numpy()])


def test_default_protocol_cifar_files_load(tmp_path):
    c10 = write_cifar10(tmp_path, train_per_class=3, test_per_class=2, protocol=pickle.DEFAULT_PROTOCOL)
    ds = load_dataset("cifar10", tmp_path, val_fraction=0.0)
    np.testing.assert_array_equal(ds.train.x.numpy(), c10["train_x"])


# ---------------------------------------------------------------- determinism and splits

def test_same_inputs_same_bits_different_seed_different_val(cifar_root):
    root, _, _ = cifar_root
    recipe = small("transport", 60, 20)
    a = load_recipe(recipe, root, seed=7, train_limit=30)
    b = load_recipe(recipe, root, seed=7, train_limit=30)
    for sa, sb in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y) and torch.equal(sa.index, sb.index)
    c = load_recipe(recipe, root, seed=8)
    assert not torch.equal(a.val.index, c.val.index)  # the training seed moves val...
    assert torch.equal(a.test.index, c.test.index)  # ...but never the subset or the test set
    d = load_recipe(replace(recipe, seed=43), root)
    assert not torch.equal(c.test.index, d.test.index)  # the recipe seed is what draws subsets


def test_val_is_stratified_and_disjoint(cifar_root):
    root, _, _ = cifar_root
    full = load_recipe(small("transport", 80, 20), root, val_fraction=0.0)
    ds = load_recipe(small("transport", 80, 20), root, val_fraction=0.2, seed=3)
    train, val = set(ds.train.index.tolist()), set(ds.val.index.tolist())
    assert not train & val
    assert train | val == set(full.train.index.tolist())
    assert per_class(ds.val.y, 4) == [4, 4, 4, 4] and per_class(ds.train.y, 4) == [16, 16, 16, 16]
    assert torch.equal(ds.test.index, full.test.index)


def test_train_limit_is_balanced(cifar_root):
    root, _, _ = cifar_root
    ds = load_recipe(small("transport", 80, 20), root, val_fraction=0.25, train_limit=22)
    assert per_class(ds.train.y, 4) == [6, 6, 5, 5]
    assert per_class(ds.val.y, 4) == [5, 5, 5, 5]  # val is carved before the limit and keeps its size
    assert not set(ds.train.index.tolist()) & set(ds.val.index.tolist())
    assert "train limited to 22" in ds.source


def test_bad_val_fraction(cifar_root):
    with pytest.raises(ValueError):
        load_recipe(small("transport", 40, 20), cifar_root[0], val_fraction=1.0)


# ---------------------------------------------------------------- Fashion-MNIST / footwear

def test_footwear_from_idx_files(tmp_path, no_system_data):
    src = write_fashion_mnist(tmp_path / "fashion-mnist")
    ds = load_recipe(small("footwear", 30, 15), tmp_path, val_fraction=0.2)
    assert ds.classes == ("sandal", "sneaker", "ankle boot")
    assert_well_formed(ds, 1, 28)
    assert per_class(torch.cat([ds.train.y, ds.val.y]), 3) == [10, 10, 10]
    assert per_class(ds.val.y, 3) == [2, 2, 2] and per_class(ds.test.y, 3) == [5, 5, 5]
    np.testing.assert_array_equal(ds.test.x.numpy()[:, 0], src["test_x"][ds.test.index.numpy()])
    np.testing.assert_array_equal(np.array([5, 7, 9])[ds.val.y.numpy()], src["train_y"][ds.val.index.numpy()])


def test_footwear_all_keeps_every_footwear_image(tmp_path, no_system_data):
    src = write_fashion_mnist(tmp_path / "fashion-mnist")  # 20 train and 10 test images per class
    ds = load_dataset("footwear_all", tmp_path, val_fraction=0.2)
    assert ds.classes == ("sandal", "sneaker", "ankle boot")
    assert per_class(torch.cat([ds.train.y, ds.val.y]), 3) == [20, 20, 20] and per_class(ds.test.y, 3) == [10, 10, 10]
    kept = np.sort(np.concatenate([ds.train.index.numpy(), ds.val.index.numpy()]))
    np.testing.assert_array_equal(kept, np.flatnonzero(np.isin(src["train_y"], (5, 7, 9))))


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_footwear_all_is_a_superset_of_footwear(tmp_path):
    everything = load_dataset("footwear_all", DEBIAN_FASHION.parent, val_fraction=0.1)
    assert len(everything.train) + len(everything.val) == 18000 and len(everything.test) == 3000
    subset = load_dataset("footwear", "does-not-exist", val_fraction=0.1)
    all_train = np.concatenate([everything.train.index.numpy(), everything.val.index.numpy()])
    sub_train = np.concatenate([subset.train.index.numpy(), subset.val.index.numpy()])
    assert np.isin(sub_train, all_train).all() and np.isin(subset.test.index.numpy(), everything.test.index.numpy()).all()


@pytest.mark.parametrize("layout", ["FashionMNIST/raw", "."])
def test_fashion_mnist_other_layouts_uncompressed(tmp_path, no_system_data, layout):
    src = write_fashion_mnist(tmp_path / layout, gz=False)
    ds = load_dataset("fashion_mnist", tmp_path, val_fraction=0.0)
    assert ds.classes[5] == "sandal" and len(ds.classes) == 10
    np.testing.assert_array_equal(ds.train.x.numpy()[:, 0], src["train_x"])
    np.testing.assert_array_equal(ds.test.y.numpy(), src["test_y"])
    assert ds.train.x.shape == (200, 1, 28, 28)


def test_bad_idx_file_is_named(tmp_path, no_system_data):
    folder = tmp_path / "fashion-mnist"
    write_fashion_mnist(folder)
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 2), np.uint8))))  # images magic where labels belong
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: not an idx file.*0x00000801"):
        load_dataset("fashion_mnist", tmp_path)
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-30])  # truncated gzip
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_dataset("fashion_mnist", tmp_path)
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8))[:-5]))  # header says more than there is
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: header says"):
        load_dataset("fashion_mnist", tmp_path)


def test_footwear_embedded_npz():
    assert embedded.path_for("footwear").is_file()
    ds = load_dataset("footwear", "does-not-exist", val_fraction=0.1)
    assert ds.classes == ("sandal", "sneaker", "ankle boot")
    assert_well_formed(ds, 1, 28)
    assert len(ds.train) + len(ds.val) == 10000 and len(ds.test) == 2500
    assert per_class(torch.cat([ds.train.y, ds.val.y]), 3) == [3334, 3333, 3333]
    assert per_class(ds.test.y, 3) == [834, 833, 833]
    assert "[embedded footwear.npz]" in ds.source
    check_dataset("footwear", "does-not-exist")  # nothing on disk needed


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_footwear_npz_matches_fresh_build(monkeypatch, tmp_path):
    shipped = embedded.load(DATASETS["footwear"])
    assert shipped is not None
    monkeypatch.setattr(embedded, "EMBEDDED_DIR", tmp_path)  # force a draw from the idx files
    fresh = load_raw(DATASETS["footwear"], tmp_path)
    assert "[embedded" not in fresh.source and shipped.classes == fresh.classes
    for a, b in ((shipped.train, fresh.train), (shipped.test, fresh.test)):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.index, b.index)
    source_y = idx.read_idx(DEBIAN_FASHION / "train-labels-idx1-ubyte.gz", 1)
    np.testing.assert_array_equal(np.array([5, 7, 9])[fresh.train.y], source_y[fresh.train.index])


def test_stale_embedded_npz_is_ignored(tmp_path, monkeypatch, no_system_data):
    write_fashion_mnist(tmp_path / "fashion-mnist")
    recipe = small("footwear", 30, 15)
    raw = load_raw(recipe, tmp_path)
    monkeypatch.setattr(embedded, "EMBEDDED_DIR", tmp_path)
    embedded.save(embedded.path_for("footwear"), raw, replace(recipe, n_train=24))  # drawn with another recipe
    assert not embedded.matches(recipe)
    assert embedded.load(replace(recipe, n_train=24)) is not None
    again = load_raw(recipe, tmp_path)
    assert "[embedded" not in again.source
    np.testing.assert_array_equal(again.train.x, raw.train.x)


# ---------------------------------------------------------------- digits

def test_digits():
    ds = load_dataset("digits", val_fraction=0.1)
    assert ds.classes == tuple(str(i) for i in range(10))
    assert_well_formed(ds, 1, 8)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797 and len(ds.test) == 360
    assert int(ds.train.x.max()) == 255 and int(ds.train.x.min()) == 0
    assert min(per_class(ds.test.y, 10)) >= 35  # stratified: every digit ~36 times
    everything = torch.cat([ds.train.index, ds.val.index, ds.test.index])
    assert sorted(everything.tolist()) == list(range(1797))
    from sklearn.datasets import load_digits

    bunch = load_digits()
    i = int(ds.test.index[0])
    np.testing.assert_array_equal(ds.test.x[0, 0].numpy(), np.rint(bunch.images[i] * 255 / 16).astype(np.uint8))
    assert int(ds.test.y[0]) == bunch.target[i]


# ---------------------------------------------------------------- missing files and downloads

def test_missing_cifar10_message(tmp_path):
    with pytest.raises(DataError) as err:
        check_dataset("transport", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "'transport'" in msg and "CIFAR-10" in msg and str(tmp_path / "cifar-10-batches-py") in msg
    assert all(f in msg for f in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"))
    assert "cifar-10-python.tar.gz" in msg and "--download" in msg
    with pytest.raises(DataError, match="'animals' needs CIFAR-10"):
        load_dataset("animals", tmp_path)


def test_partly_missing_cifar100_names_only_whats_missing(tmp_path):
    write_cifar100(tmp_path, train_per_class=1, test_per_class=1)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DataError) as err:
        check_dataset("people", tmp_path)
    msg = str(err.value)
    assert "'people' needs CIFAR-100" in msg and "(missing meta)" in msg and "cifar-100-python.tar.gz" in msg


def test_missing_fashion_mnist_message(tmp_path, no_system_data):
    with pytest.raises(DataError) as err:
        check_dataset("footwear", tmp_path)  # no embedded npz here, no idx files anywhere
    msg = str(err.value)
    assert "\n" not in msg and "'footwear' needs Fashion-MNIST" in msg
    assert str(tmp_path / "fashion-mnist") in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(DataError, match="'fashion_mnist' needs Fashion-MNIST"):
        load_dataset("fashion_mnist", tmp_path)


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        load_dataset("transport", tmp_path, download=True)
    msg = str(err.value)
    assert "download of CIFAR-10" in msg and "failed" in msg and "name resolution" in msg
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg


def test_download_fetches_then_reads(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_download(url, download_root, filename, md5):
        calls.append((url, filename, md5))
        write_cifar10(Path(download_root), train_per_class=5, test_per_class=5)

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_download)
    check_dataset("transport", tmp_path, download=True)  # the pre-flight fetches once
    assert [c[1] for c in calls] == ["cifar-10-python.tar.gz"] and calls[0][2]
    ds = load_recipe(small("transport", 20, 8), tmp_path, download=True)  # already there: no second fetch
    assert len(calls) == 1 and per_class(ds.test.y, 4) == [2, 2, 2, 2]


# ---------------------------------------------------------------- image folders

def _colour_label(x: torch.Tensor) -> list[int]:
    """Each image's class, read back from its colour."""
    centre = x[:, :, x.shape[2] // 2, x.shape[3] // 2].tolist()
    return [COLOURS.index(tuple(c)) for c in centre]


def test_imagefolder_flat_layout(tmp_path):
    tree = tmp_path / "pets"
    for label, name in enumerate(("cat", "dog", "fox")):
        write_image_class(tree / name, label, 10)
    Image.new("L", (9, 40), 128).save(tree / "fox" / "grey.png")  # greyscale becomes RGB
    (tree / "cat" / ".hidden.png").write_bytes(b"junk")  # hidden: skipped
    (tree / "cat" / "notes.txt").write_text("not an image")  # not an image: skipped
    (tree / ".thumbs").mkdir()  # hidden folder: not a class
    ds = load_dataset(f"imagefolder:{tree}", image_size=16, val_fraction=0.25)
    assert ds.classes == ("cat", "dog", "fox")
    assert_well_formed(ds, 3, 16)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 31
    assert per_class(ds.test.y, 3) == [2, 2, 3]  # 20% carved, stratified
    for split in (ds.train, ds.val):
        for label, x in zip(split.y.tolist(), split.x):
            if (x == 128).all():
                assert label == 2  # the grey fox
            else:
                assert _colour_label(x[None]) == [label]
    all_index = torch.cat([ds.train.index, ds.val.index, ds.test.index])
    assert sorted(all_index.tolist()) == list(range(31))
    assert "pets" in ds.source and "flat" in ds.source
    again = load_dataset(f"imagefolder:{tree}", image_size=16, val_fraction=0.25)
    assert torch.equal(again.train.x, ds.train.x) and torch.equal(again.test.index, ds.test.index)
    assert load_dataset(f"imagefolder:{tree}").train.x.shape[-1] == 64  # default storage size


def test_imagefolder_train_test_layout(tmp_path):
    tree = tmp_path / "tree"
    for label, name in enumerate(("a_class", "b_class")):
        write_image_class(tree / "train" / name, label, 6)
        write_image_class(tree / "test" / name, label, 3, start=100)
    ds = load_dataset(f"imagefolder:{tree}", image_size=12, val_fraction=0.5)
    assert ds.classes == ("a_class", "b_class")
    assert per_class(ds.test.y, 2) == [3, 3] and per_class(ds.val.y, 2) == [3, 3]
    assert _colour_label(ds.test.x) == ds.test.y.tolist()
    assert ds.test.index.tolist() == list(range(6))
    assert "train/test" in ds.source


def test_imagefolder_train_val_test_layout(tmp_path):
    tree = tmp_path / "tree"
    for label, name in enumerate(("x", "y")):
        write_image_class(tree / "train" / name, label, 4)
        write_image_class(tree / "val" / name, label, 2)
        write_image_class(tree / "test" / name, label, 1)
    ds = load_dataset(f"imagefolder:{tree}", image_size=8)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 4, 2)
    assert _colour_label(ds.val.x) == ds.val.y.tolist()


def test_imagefolder_corrupt_image_named(tmp_path):
    tree = tmp_path / "tree"
    write_image_class(tree / "cat", 0, 3)
    write_image_class(tree / "dog", 1, 3)
    bad = tree / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    with pytest.raises(DataError) as err:  # the pre-flight scan finds it (issue 15: before the grid starts)
        check_dataset(f"imagefolder:{tree}")
    msg = str(err.value)
    assert str(tree) in msg and "dog/broken.jpg (" in msg and "\n" not in msg and "on_bad_image" in msg
    with pytest.raises(DataError) as err:
        load_dataset(f"imagefolder:{tree}", image_size=8)
    assert "dog/broken.jpg (" in str(err.value) and "\n" not in str(err.value)


def test_imagefolder_empty_or_missing(tmp_path):
    tree = tmp_path / "tree"
    write_image_class(tree / "cat", 0, 3)
    (tree / "dog").mkdir()
    with pytest.raises(DataError, match=f"{tree / 'dog'} holds no images"):
        check_dataset(f"imagefolder:{tree}")
    with pytest.raises(DataError, match="doesn't exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    # one class trained "to 100%" without a word: a folder given one level too deep
    write_image_class(tmp_path / "one" / "cat", 0, 4)
    with pytest.raises(DataError, match=r"has one class folder \('cat'\); a classifier needs at least 2"):
        check_dataset(f"imagefolder:{tmp_path / 'one'}")


def test_classes_every_run_would_fail_on_are_refused_before_the_grid(tmp_path):
    # both were each run's failure, after the grid had started
    flat = tmp_path / "flat"
    write_image_class(flat / "cat", 0, 5)
    write_image_class(flat / "dog", 1, 1)
    with pytest.raises(DataError) as err:
        check_dataset(f"imagefolder:{flat}")
    assert str(err.value) == (f"dataset 'imagefolder:{flat}': class 'dog' has 1 image(s); a flat folder needs at "
                              "least 2 per class to carve a test split (or use train/ and test/ folders)")
    write_image_class(flat / "dog", 1, 3)
    for f in (flat / "dog").iterdir():
        f.write_bytes(b"not an image")  # every dog unreadable: skip would leave the class empty
    with pytest.raises(DataError, match="class 'dog' has no readable training image left once the unreadable ones "
                                        "are skipped; fix them or remove the class folder"):
        check_dataset(f"imagefolder:{flat}", on_bad_image="skip")
    # one image per class is enough where test/ is given
    split = tmp_path / "split"
    for part in ("train", "test"):
        write_image_class(split / part / "cat", 0, 1)
        write_image_class(split / part / "dog", 1, 1)
    assert check_dataset(f"imagefolder:{split}") == []


def test_a_folder_lists_in_path_order_and_fingerprints_its_relative_paths(tmp_path):
    # names where string order and Path order differ ("a-b/..." < "a/..." as strings, not as paths)
    import hashlib

    from engine.data import folder

    root = tmp_path / "tree"
    names = ["a/x.png", "a-b/x.png", "a.b/y.PNG", "a/b/z.png", "z.jpg", "Z.jpeg", "n o.png", "noext", "x.txt"]
    for cls in ("cat", "dog"):
        for name in names:
            f = root / cls / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"\x89PNG" + name.encode())
    tree = folder.check(f"imagefolder:{root}")
    want = sorted(p for cls in ("cat", "dog") for p in (root / cls).rglob("*")
                  if p.is_file() and p.suffix.lower() in folder.SUFFIXES)
    assert list(tree.train.files) == want and len(want) == 14
    h = hashlib.sha256(f"{tree.layout}\0cat/dog\0v\0".encode())
    h.update(b"[train]")
    for path, label in zip(want, tree.train.labels):
        st = path.stat()
        h.update(f"{path.relative_to(root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    assert folder.fingerprint(tree, "v") == h.hexdigest()
