"""The store's study folders: names, status with the dead-process rule, cells, grids and studies kept apart."""

from __future__ import annotations

import pytest

from engine.config import GridConfig, StudyConfig
from engine.store import DEAD_STUDY, FileLock, RunStore, StoreError, StudyDir, StudyStatus, cell_key, file_key


def test_keys_are_single_folder_names():
    assert file_key("run:grid-a/footwear__efficientnet_lite0__partial") == \
        "run-grid-a-footwear__efficientnet_lite0__partial"
    assert file_key("efficientnet_lite0@64") == "efficientnet_lite0-64"
    assert file_key("imagefolder:/data/my pets") == "if-data-my-pets"
    assert cell_key("fashion_mnist", "run:g/r") == "fashion_mnist__run-g-r"
    assert "/" not in cell_key("imagefolder:/a/b", "run:x/y")


def test_paths_live_in_the_study_folder(tmp_path):
    sdir = StudyDir(tmp_path / "s")
    cell = cell_key("digits", "small_cnn")
    for path in (sdir.info_file, sdir.status_file, sdir.metrics_csv, sdir.cell_file(cell), sdir.points_file(cell),
                 sdir.sample_file("digits"), sdir.model_file(cell), sdir.points_csv("digits"),
                 sdir.projection_png("tsne", "digits"), sdir.before_after_png("digits", "run:g/r"),
                 sdir.metrics_png("digits")):
        assert sdir.path in path.parents
    assert sdir.projection_png("pca", "digits").name == "pca_digits.png"
    assert sdir.before_after_png("digits", "run:g/r").name == "before_after_digits__run-g-r.png"


def test_status_round_trip_and_dead_process(tmp_path):
    sdir = StudyDir(tmp_path / "s")
    assert sdir.status().status == "queued"  # nothing written yet
    sdir.write_status(StudyStatus(status="running", done=1, total=4, stage="extracting", notes=["a"]))
    st = sdir.status()
    assert (st.status, st.error) == ("failed", DEAD_STUDY)  # nobody holds study.lock
    lock = FileLock(sdir.lock_file)
    assert lock.acquire()
    try:
        st = sdir.status()
        assert (st.status, st.done, st.total, st.stage, st.notes) == ("running", 1, 4, "extracting", ["a"])
        assert sdir.running()
    finally:
        lock.release()
    sdir.status_file.write_text("{torn")
    assert sdir.status().status == "failed" and "unreadable" in sdir.status().error


def test_cells_and_cancel(tmp_path):
    sdir = StudyDir(tmp_path / "s")
    assert sdir.cells() == [] and sdir.cell("x") is None
    sdir.write_cell("digits__a", {"extractor": "a"})
    sdir.write_cell("digits__b", {"extractor": "b"})
    (sdir.path / sdir.CELLS / "digits__c.json").write_text('{"torn"')  # a cell killed mid-write is not finished
    assert [c["extractor"] for c in sdir.cells()] == ["a", "b"]
    assert sdir.cancel_reason() is None
    sdir.request_cancel("enough")
    assert sdir.cancel_reason() == "enough"
    sdir.clear_cancel()
    assert sdir.cancel_reason() is None


def test_store_lists_studies_apart_from_grids(tmp_path):
    store = RunStore(tmp_path)
    sdir = store.study("fm")
    sdir.path.mkdir()
    sdir.write_info(StudyConfig(name="fm"))
    gdir = store.grid("g")
    gdir.path.mkdir()
    gdir.write_info(GridConfig(name="g"), [])
    assert store.studies() == ["fm"] and store.grids() == ["g"]
    assert store.find_study("fm") == sdir and sdir.config() == StudyConfig(name="fm")
    with pytest.raises(StoreError, match="'g' is a grid in .*not a study"):
        store.study("g")
    with pytest.raises(StoreError, match="'fm' is a study in .*not a grid"):
        store.grid("fm")
    with pytest.raises(StoreError, match=r"no study 'nope' in .*; studies there: fm"):
        store.find_study("nope")
    with pytest.raises(StoreError, match="must be a name in the run store"):
        store.study("../x")
