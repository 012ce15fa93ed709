"""Snapshot tests of the main screens at 80x24 over fixture stores (running, finished, failed, empty).

Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the report. Time is fixed (``NOW``), the store path is relative and
times of day are UTC, so the pictures do not depend on when or where they are taken.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.tui_fixtures import make_app, store_empty, store_failed, store_finished, store_running, until
from tui.screens.compare import CompareScreen
from tui.screens.detail import DetailScreen
from tui.screens.runs import RunsScreen
from tui.widgets.runs_table import RunsTable

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def fixed_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def runs_loaded(rows: int):
    async def run_before(pilot) -> None:
        app = pilot.app
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunsTable).row_count == rows)
        await pilot.pause()

    return run_before


def open_run(rows: int, key: str, tab: str = ""):
    async def run_before(pilot) -> None:
        app = pilot.app
        await runs_loaded(rows)(pilot)
        table = app.screen.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail is not None)
        if tab:
            await pilot.press(tab)
        await pilot.pause()

    return run_before


def test_runs_running(snap_compare):
    store = store_running(Path("runs"))
    try:
        assert snap_compare(make_app("runs"), terminal_size=SIZE, run_before=runs_loaded(6))
    finally:
        store.release()


def test_runs_finished(snap_compare):
    store_finished(Path("runs"))
    assert snap_compare(make_app("runs"), terminal_size=SIZE, run_before=runs_loaded(12))


def test_runs_failed_with_reason_of_the_unreadable_one(snap_compare):
    store_failed(Path("runs"))

    async def run_before(pilot) -> None:
        await runs_loaded(4)(pilot)
        await pilot.press("G")

    assert snap_compare(make_app("runs"), terminal_size=SIZE, run_before=run_before)


def test_runs_empty(snap_compare):
    store_empty(Path("runs"))

    async def run_before(pilot) -> None:
        await until(pilot, lambda: pilot.app.snapshot is not None)
        await pilot.pause()

    assert snap_compare(make_app("runs"), terminal_size=SIZE, run_before=run_before)


def test_detail_curves_of_a_running_run(snap_compare):
    store = store_running(Path("runs"))
    try:
        assert snap_compare(make_app("runs"), terminal_size=SIZE,
                            run_before=open_run(6, "live/footwear__resnet50__frozen"))
    finally:
        store.release()


def test_detail_results_of_a_finished_run(snap_compare):
    store_finished(Path("runs"))
    assert snap_compare(make_app("runs"), terminal_size=SIZE,
                        run_before=open_run(12, "study/transport__resnet50__partial", "3"))


def test_detail_layers(snap_compare):
    store_finished(Path("runs"))
    assert snap_compare(make_app("runs"), terminal_size=SIZE,
                        run_before=open_run(12, "study/transport__resnet50__full", "2"))


def test_compare_three_runs(snap_compare):
    store_finished(Path("runs"))

    async def run_before(pilot) -> None:
        app = pilot.app
        await runs_loaded(12)(pilot)
        await pilot.press("space", "space", "space", "c")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and len(app.screen.details) == 3)
        await pilot.pause()

    assert snap_compare(make_app("runs"), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare):
    store_finished(Path("runs"))

    async def run_before(pilot) -> None:
        await runs_loaded(12)(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app("runs"), terminal_size=SIZE, run_before=run_before)
