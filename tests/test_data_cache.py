"""The dataset cache: decoded once per (dataset, storage size), shared, checked, rebuilt when stale or corrupt;
two processes decode once; unreadable images found up front and listed, or skipped."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import DataError, check_dataset, decode, folder, load_dataset, open_dataset, scan
from engine.data import cache as cache_mod
from engine.data.check import check_grid_data
from engine.store import DatasetCacheDir, RunStore

from .data_fixtures import write_image_class

ROOT = Path(__file__).resolve().parents[1]


def tree_of(tmp_path: Path, per_class: int = 6, name: str = "pets") -> Path:
    tree = tmp_path / name
    for label, cls in enumerate(("cat", "dog", "fox")):
        write_image_class(tree / cls, label, per_class)
    return tree


def count_decodes(monkeypatch) -> list[Path]:
    seen: list[Path] = []
    real = decode.read_image

    def counting(path, stored):
        seen.append(path)
        return real(path, stored)

    monkeypatch.setattr(decode, "read_image", counting)
    return seen


def png_that_verifies_but_does_not_decode(path: Path) -> None:
    """A PNG whose chunks all have good checksums (Pillow's verify passes) but whose pixel data is no zlib
    stream: only decoding finds it."""
    Image.new("RGB", (7, 5), (1, 2, 3)).save(path)
    data = path.read_bytes()
    pos = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[pos: pos + 4])[0]
    junk = bytes(range(7, 7 + length))
    chunk = struct.pack(">I", length) + b"IDAT" + junk + struct.pack(">I", zlib.crc32(b"IDAT" + junk) & 0xFFFFFFFF)
    path.write_bytes(data[:pos] + chunk + data[pos + 12 + length:])


# --- hit, miss, same bits -------------------------------------------------------------


def test_second_open_reads_the_cache_and_gives_the_same_bits(tmp_path, monkeypatch):
    tree = tree_of(tmp_path)
    cache = DatasetCacheDir(tmp_path / "cache")
    decoded = count_decodes(monkeypatch)
    first = open_dataset(f"imagefolder:{tree}", image_size=12, val_fraction=0.25, cache=cache)
    assert first.arrays.notes["cache"] == "built" and len(decoded) == 18
    again = open_dataset(f"imagefolder:{tree}", image_size=12, val_fraction=0.25, seed=7, cache=cache)
    assert again.arrays.notes["cache"] == "hit" and len(decoded) == 18  # nothing decoded the second time
    assert isinstance(again.arrays.images, np.memmap) and again.arrays.file is not None
    plain = load_dataset(f"imagefolder:{tree}", image_size=12, val_fraction=0.25)  # no cache: decoded in memory
    cached = first.materialise()
    for split in ("train", "val", "test"):
        a, b = getattr(plain, split), getattr(cached, split)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.index, b.index)
    assert cached.source == plain.source and cached.storage == plain.storage
    # another storage size is another entry; the first stays
    open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache)
    assert len(decoded) == 18 * 3 and len([p for p in cache.path.iterdir() if p.is_dir() and "px" in p.name]) == 2


def test_recipe_datasets_are_cached_too(tmp_path):
    cache = DatasetCacheDir(tmp_path / "cache")
    first = open_dataset("digits", cache=cache)
    second = open_dataset("digits", cache=cache)
    assert (first.arrays.notes["cache"], second.arrays.notes["cache"]) == ("built", "hit")
    plain = load_dataset("digits")
    assert torch.equal(second.materialise().train.x, plain.train.x)
    assert second.materialise().test.index.tolist() == plain.test.index.tolist()


def test_the_default_cache_lives_in_the_run_store():
    assert RunStore("/srv/runs").dataset_cache.path == Path("/srv/runs/.cache/datasets")
    assert RunStore("/srv/runs").grids() == []  # ".cache" is never a grid


# --- stale and corrupt ------------------------------------------------------------------


def test_a_changed_folder_is_decoded_again_and_the_stale_entry_goes(tmp_path, monkeypatch):
    tree = tree_of(tmp_path)
    cache = DatasetCacheDir(tmp_path / "cache")
    open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache)
    before = [e.path for e in cache.entries(next(iter(_keys(cache))))]
    changed = tree / "dog" / "img_001.png"
    Image.new("RGB", (9, 9), (9, 9, 9)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    decoded = count_decodes(monkeypatch)
    fresh = open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache)
    assert fresh.arrays.notes["cache"] == "built" and len(decoded) == 18
    after = [e.path for e in cache.entries(next(iter(_keys(cache))))]
    assert len(before) == len(after) == 1 and before != after  # the stale entry was removed
    made = fresh.materialise()
    assert any(bool((getattr(made, split).x == 9).all(dim=(1, 2, 3)).any()) for split in ("train", "val", "test"))


def _keys(cache: DatasetCacheDir) -> set[str]:
    return {p.name.rsplit("-", 1)[0] for p in cache.path.iterdir() if p.is_dir() and not p.name.startswith(".")
            and p.name != "scans"}


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta", "labels"])
def test_a_corrupt_entry_is_detected_and_rebuilt(tmp_path, monkeypatch, caplog, damage):
    tree = tree_of(tmp_path)
    cache = DatasetCacheDir(tmp_path / "cache")
    good = open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache).materialise()
    (entry,) = cache.entries(next(iter(_keys(cache))))
    if damage == "truncate":
        os.truncate(entry.images, os.path.getsize(entry.images) - 100)
    elif damage == "flip":  # the last row sits in the last sampled block
        with open(entry.images, "r+b") as fh:
            fh.seek(-5, os.SEEK_END)
            fh.write(b"\x00\x01\x02\x03\x04")
    elif damage == "meta":
        entry.meta.write_text("{not json")
    else:
        np.save(entry.labels, np.zeros(18, dtype=np.int64))
    decoded = count_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="engine.data.cache"):
        again = open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache)
    assert again.arrays.notes["cache"] == "built" and len(decoded) == 18
    assert "corrupt" in caplog.text and "rebuilding" in caplog.text
    assert torch.equal(again.materialise().train.x, good.train.x)


def test_a_builder_killed_midway_leaves_nothing_readers_use(tmp_path, monkeypatch):
    tree = tree_of(tmp_path)
    cache = DatasetCacheDir(tmp_path / "cache")
    calls = {"n": 0}
    real = decode.read_image

    def dies(path, stored):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt("killed")
        return real(path, stored)

    monkeypatch.setattr(decode, "read_image", dies)
    with pytest.raises(KeyboardInterrupt):
        open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache)
    assert not any(e.complete() for key in _keys(cache) for e in cache.entries(key))
    assert not [p for p in cache.path.iterdir() if p.name.startswith(".build-")]  # staging removed
    monkeypatch.setattr(decode, "read_image", real)
    assert open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache).arrays.notes["cache"] == "built"


# --- two processes, one decode ------------------------------------------------------------

_OPENER = """
import json, sys, time
from engine.data import decode, open_dataset
from engine.store import DatasetCacheDir
real = decode.read_image
def slow(path, stored):
    with open(sys.argv[3], "a") as fh:
        fh.write(f"{path}\\n")
    time.sleep(0.05)
    return real(path, stored)
decode.read_image = slow
seen = []
ds = open_dataset(sys.argv[1], image_size=8, cache=DatasetCacheDir(sys.argv[2]),
                  waiting=lambda done, total: seen.append([done, total]))
print(json.dumps({"cache": ds.arrays.notes["cache"], "waited": seen, "train": ds.train.rows.tolist()}))
"""


def test_two_processes_starting_together_decode_once(tmp_path):
    tree = tree_of(tmp_path, per_class=10)
    log = tmp_path / "decoded.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", _OPENER, f"imagefolder:{tree}", str(tmp_path / "cache"), str(log)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["cache"] for o in outs) == ["built", "waited"]
    assert len(log.read_text().splitlines()) == 30  # every image decoded exactly once, by one of them
    waiter = next(o for o in outs if o["cache"] == "waited")
    assert waiter["waited"] and any(total == 30 for _, total in waiter["waited"])  # it saw the builder's progress
    assert outs[0]["train"] == outs[1]["train"]


# --- unreadable images ------------------------------------------------------------------------


def test_the_scan_lists_every_unreadable_file_in_one_line_and_is_remembered(tmp_path, monkeypatch):
    tree = tree_of(tmp_path)
    junk = tree / "cat" / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    cut = tree / "fox" / "cut.png"
    whole = (tree / "fox" / "img_000.png").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    cache = DatasetCacheDir(tmp_path / "cache")
    with pytest.raises(DataError) as err:
        check_dataset(f"imagefolder:{tree}", cache=cache)
    msg = str(err.value)
    assert "\n" not in msg and "2 unreadable images;" in msg and "cat/junk.jpg (" in msg
    assert "fox/cut.png (" in msg and str(tree / "cat") not in msg  # named relative to the folder, once
    assert "--set data.on_bad_image=skip" in msg
    calls = []
    monkeypatch.setattr(scan, "verify_file", lambda p: calls.append(p) or "")
    bad = check_dataset(f"imagefolder:{tree}", cache=cache, on_bad_image="skip")
    assert sorted(p for p, _ in bad) == sorted([str(junk), str(cut)]) and calls == []  # from the kept scan


def test_more_unreadable_files_than_a_line_holds_are_all_in_the_scan_file(tmp_path):
    tree = tree_of(tmp_path)
    for i in range(25):
        (tree / "dog" / f"bad_{i:02d}.png").write_bytes(b"not a png")
    cache = DatasetCacheDir(tmp_path / "cache")
    with pytest.raises(DataError) as err:
        check_dataset(f"imagefolder:{tree}", cache=cache)
    msg = str(err.value)
    assert "25 unreadable images (all listed in " in msg and msg.endswith(", and 5 more")
    record = json.loads(Path(msg.split("(all listed in ")[1].split(")")[0]).read_text())
    assert sorted(rel for rel, _ in record["unreadable"]) == [f"dog/bad_{i:02d}.png" for i in range(25)]


def test_skip_trains_without_them_and_decoding_finds_what_the_scan_missed(tmp_path):
    tree = tree_of(tmp_path)
    junk = tree / "cat" / "junk.png"
    junk.write_bytes(b"not a png at all")
    sly = tree / "dog" / "sly.png"
    png_that_verifies_but_does_not_decode(sly)
    assert scan.verify_file(sly) == ""  # the scan can't see this one
    cache = DatasetCacheDir(tmp_path / "cache")
    assert [p for p, _ in check_dataset(f"imagefolder:{tree}", cache=cache, on_bad_image="skip")] == [str(junk)]
    with pytest.raises(DataError) as err:  # fail: decoding names both
        open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache)
    assert "cat/junk.png (" in str(err.value) and "dog/sly.png (" in str(err.value)
    ds = open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache, on_bad_image="skip")
    assert ds.arrays.notes["cache"] == "hit"  # the entry was built by the failing attempt; skip reuses it
    assert sorted(p for p, _ in ds.skipped) == sorted([str(junk), str(sly)])
    assert len(ds.train) + len(ds.val) + len(ds.test) == 18 and "2 unreadable skipped" in ds.source
    listing = folder.check(f"imagefolder:{tree}")
    files = [f for listing_ in listing.parts().values() for f in listing_.files]
    used = {str(files[i]) for split in ("train", "val", "test") for i in ds.split(split).index.tolist()}
    assert str(junk) not in used and str(sly) not in used and len(used) == 18


def test_the_grid_pre_flight_checks_each_dataset_with_its_runs_settings(tmp_path, caplog):
    from engine.config import GridConfig
    from engine.orchestrator import prepare

    tree = tree_of(tmp_path)
    (tree / "cat" / "junk.png").write_bytes(b"junk")
    (tree / "fox" / "junk2.png").write_bytes(b"junk")
    grid = GridConfig.from_dict({"name": "g", "datasets": [f"imagefolder:{tree}"], "backbones": ["test_efficientnet"],
                                 "strategies": ["frozen"]})
    with pytest.raises(DataError) as err:
        prepare(grid, tmp_path / "runs")
    assert "2 unreadable images" in str(err.value) and "junk2.png" in str(err.value)
    assert not (tmp_path / "runs" / "g").exists()  # nothing started
    skip = GridConfig.from_dict({**grid.to_dict(), "overrides": {f"imagefolder:{tree}": {"data.on_bad_image": "skip"}}})
    with caplog.at_level(logging.WARNING, logger="engine.data.check"):
        found = check_grid_data(skip, tmp_path / "runs")
    assert len(found[f"imagefolder:{tree}"]) == 2 and "2 unreadable image(s) will be skipped" in caplog.text
    assert RunStore(tmp_path / "runs").dataset_cache.scan_file(
        folder.fingerprint(folder.check(f"imagefolder:{tree}"), scan.FORMAT)).is_file()


def test_a_file_named_as_a_folder_says_so(tmp_path):
    f = tmp_path / "shoes.zip"
    f.write_bytes(b"PK")
    with pytest.raises(DataError, match="is a file, not a folder"):
        check_dataset(f"imagefolder:{f}")


def test_cache_entry_files_are_named_by_the_store(tmp_path):
    tree = tree_of(tmp_path)
    cache = DatasetCacheDir(tmp_path / "cache")
    ds = open_dataset(f"imagefolder:{tree}", image_size=8, cache=cache)
    (entry,) = cache.entries(next(iter(_keys(cache))))
    assert entry.path.name.startswith("pets-8px-") and ds.arrays.file == entry.images
    meta = json.loads(entry.meta.read_text())
    assert meta["format"] == cache_mod.FORMAT and meta["shape"] == [18, 3, 8, 8]
    assert meta["storage"]["size"] == 8 and meta["skipped"] == []


def test_a_run_that_skips_lists_every_skipped_file_in_its_folder_description_and_results(tmp_path):
    from engine.store import RunDir
    from engine.worker import main as worker_main

    from .trainer_fixtures import make_run, of_type

    tree = tree_of(tmp_path, per_class=8)
    junk = tree / "cat" / "junk.png"
    junk.write_bytes(b"junk")
    sly = tree / "fox" / "sly.png"
    png_that_verifies_but_does_not_decode(sly)
    rdir = make_run(tmp_path, data={"dataset": f"imagefolder:{tree}", "image_size": 16, "on_bad_image": "skip"},
                    epochs=1)
    assert worker_main([str(rdir)]) == 0
    skipped = RunDir(rdir).skipped()
    assert sorted(p for p, _ in skipped) == sorted([str(junk), str(sly)]) and all(r for _, r in skipped)
    (started,) = of_type(rdir, "started")
    assert started.data["skipped"] == 2 and "2 unreadable skipped" in started.data["source"]
    assert started.data["train"] + started.data["val"] + started.data["test"] == 24
    results = json.loads((rdir / "results.json").read_text())
    assert sorted(results["skipped_images"]) == sorted([str(junk), str(sly)])
    failing = make_run(tmp_path, name="f", data={"dataset": f"imagefolder:{tree}", "image_size": 16}, epochs=1)
    assert worker_main([str(failing)]) == 1
    (failed,) = of_type(failing, "failed")
    # failures.py keeps the first 300 characters of a user error: the count, the hint, the first files
    assert failed.kind == "user" and "2 unreadable images" in failed.error and "cat/junk.png (" in failed.error


def test_an_unwritable_cache_is_one_line_saying_what_to_do(tmp_path):
    tree = tree_of(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's parent folder should be")
    with pytest.raises(DataError, match="can't write the dataset cache in .* data.cache = false") as err:
        open_dataset(f"imagefolder:{tree}", image_size=8, cache=DatasetCacheDir(blocker / "cache"))
    assert "\n" not in str(err.value)


def test_a_recipe_read_from_two_data_roots_keeps_two_entries(tmp_path):
    from engine.data.load import recipe_plan
    from engine.data.recipes import DatasetRecipe

    from .data_fixtures import write_cifar10

    recipe = DatasetRecipe("tiny10", "cifar10", (0, 1), 8, 4, "test recipe")
    for root in ("a", "b"):
        write_cifar10(tmp_path / root, train_per_class=6, test_per_class=3)
    plans = [recipe_plan(recipe, tmp_path / root, False) for root in ("a", "b")]
    assert plans[0].key != plans[1].key and plans[0].key.startswith("tiny10-")
