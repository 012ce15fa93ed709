"""Fault suite, the event stream (issue 15, items 1 and 10): one bad line never hides the store.

Each test breaks a run's files the way a hostile but realistic user would (a line appended by hand,
summary.json torn or deleted, events.jsonl cut short) and checks every reader: `finetune-tui runs`,
the store's own load_run, the TUI's store watcher and its detail screen. The broken run says what is
wrong ("N unreadable events", "events for epochs 3-6 are missing"); every other run is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import events as ev
from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.launcher import SubprocessLauncher
from engine.store import GridDir, RunDir, RunWriter, load_run
from tests.store_fixtures import add_to_grid, emit, finished_events, new_run
from tests.tui_fixtures import make_app, screen_text, until
from tui.run_tail import RunTail
from tui.screens.detail import DetailScreen
from tui.screens.runs import RunsScreen
from tui.store_watcher import StoreWatcher
from tui.widgets.runs_table import RunsTable

ROOT = Path(__file__).resolve().parent.parent
BAD_LINE = '{"type":"epoch","v":1,"ts":1,"epoch":"x"}'  # the line: epoch is a string
STRATEGIES = ("frozen", "partial", "full")


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd or ROOT)


def config(strategy: str) -> RunConfig:
    return RunConfig(data=DataConfig(dataset="digits"), model=ModelConfig(backbone="test_efficientnet"),
                     train=TrainConfig(strategy=strategy, epochs=6))


def store(root: Path) -> GridDir:
    """A grid of three finished runs of six epochs each (val acc rising, val loss falling)."""
    cfgs = [config(s) for s in STRATEGIES]
    gdir = add_to_grid(root, "g", cfgs)
    for i, cfg in enumerate(cfgs):
        accs = [0.5 + 0.05 * e + 0.01 * i for e in range(6)]
        test = {"accuracy": 0.8 + 0.01 * i, "f1_macro": 0.7}
        rd = new_run(gdir, cfg)
        rd.write_results({"run_id": cfg.run_id, **test})  # a worker writes it before its finished event
        emit(rd, finished_events(cfg, accs, [1.0 - 0.1 * e for e in range(6)], test=test))
    return gdir


def runs_json(root: Path) -> dict[str, dict]:
    done = cli("runs", "--runs", str(root), "--format", "json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return {row["run_id"]: row for row in json.loads(done.stdout)}


def append(rd: RunDir, *lines: str) -> None:
    with open(rd.events_file, "a", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)


@pytest.mark.parametrize("summary", ["deleted", "torn", "intact"])
def test_a_wrong_typed_event_line_is_counted_and_hides_nothing(tmp_path, summary):
    gdir = store(tmp_path)
    bad = gdir.run(config("frozen").run_id)
    before = {rd.run_id: load_run(rd).summary.to_dict() for rd in gdir.run_dirs()}
    append(bad, BAD_LINE)
    if summary == "deleted":
        bad.summary_file.unlink()
    elif summary == "torn":
        bad.summary_file.write_text(bad.summary_file.read_text()[:40])

    rows = runs_json(tmp_path)
    assert set(rows) == {config(s).run_id for s in STRATEGIES}
    # the broken run keeps everything its good lines say, and says one line was skipped
    got = rows[bad.run_id]
    assert got["status"] == "done" and got["epoch"] == 6 and got["best_epoch"] == 6
    assert got["best_val_acc"] == pytest.approx(0.75) and got["test_accuracy"] == pytest.approx(0.8)
    assert got["unreadable_events"] == 1
    assert got["notes"] == ["1 unreadable event in its events.jsonl (skipped)"]
    # every other run is exactly what it was
    for rd in gdir.run_dirs():
        if rd != bad:
            assert load_run(rd).summary.to_dict() == before[rd.run_id]
            assert rows[rd.run_id]["notes"] == [] and rows[rd.run_id]["unreadable_events"] == 0
    table = cli("runs", "--runs", str(tmp_path))
    assert table.returncode == 0 and table.stderr == ""
    assert f"g/{bad.run_id}: 1 unreadable event in its events.jsonl (skipped)" in " ".join(table.stdout.split())


def test_every_field_is_checked_against_its_type():
    good = json.loads(ev.Epoch(epoch=2, epochs=6, val_loss=0.5, group_norms={"head": 1.0}).to_json())
    assert ev.decode_event(json.dumps(good)) == ev.Epoch(**{k: v for k, v in good.items()})
    assert ev.decode_event(json.dumps(dict(good, val_loss=1))).val_loss == 1  # an int where a float goes
    assert ev.decode_event(json.dumps(dict(good, extra=[1]))).epoch == 2  # unknown fields are dropped
    assert ev.decode_event('{"type":"from_a_plugin","v":1,"ts":1}') is None  # unknown types are skipped
    for wrong in ({"epoch": "x"}, {"epoch": 2.5}, {"epoch": True}, {"val_loss": "0.5"}, {"val_loss": None},
                  {"group_norms": [1.0]}, {"is_best": 1}, {"ts": "now"}, {"epoch": 0}, {"v": "1"}, {"v": 0}):
        with pytest.raises(ev.BadEvent):
            ev.decode_event(json.dumps(dict(good, **wrong)))
    nan = json.dumps(good, separators=(",", ":")).replace('"val_loss":0.5', '"val_loss":NaN')
    assert '"val_loss":NaN' in nan
    for line in ("not json", "[1, 2]", '{"type":"epoch"}', nan, b"\xff\xfe{}"):
        with pytest.raises(ev.BadEvent):
            ev.decode_event(line)
    with pytest.raises(ev.NewerEvent) as newer:
        ev.decode_event(json.dumps(dict(good, v=ev.SCHEMA_VERSION + 1)))
    assert newer.value.version == ev.SCHEMA_VERSION + 1
    # nested values of the wrong type never reach a summary's numbers
    summary = load_run_of([ev.Started(weights={"description": 5}, config={"train": []}),
                           ev.Finished(best_epoch=1, test={"accuracy": "high", "f1_macro": 0.5})])
    assert (summary.weights, summary.test_accuracy, summary.test_f1_macro) == ("", None, 0.5)


def load_run_of(events):
    from engine.store import RunSummary, fold

    summary = RunSummary()
    for event in events:
        fold(summary, event)
    return summary


def test_events_of_a_newer_version_say_upgrade(tmp_path):
    gdir = store(tmp_path)
    rd = gdir.run(config("full").run_id)
    future = dict(json.loads(ev.Log(message="from the future").to_json()), v=ev.SCHEMA_VERSION + 1)
    append(rd, json.dumps(future), json.dumps(dict(future, type="epoch", epoch=7)))
    row = runs_json(tmp_path)[rd.run_id]
    assert row["status"] == "done" and row["epoch"] == 6
    assert row["notes"] == [f"2 events from a newer finetune-tui (v{ev.SCHEMA_VERSION + 1}); upgrade to read them"]


def test_a_tampered_summary_json_is_rebuilt_from_the_events(tmp_path):
    gdir = store(tmp_path)
    rd = gdir.run(config("partial").run_id)
    obj = json.loads(rd.summary_file.read_text())
    rd.summary_file.write_text(json.dumps(dict(obj, epoch="six", val_acc_history=["a"])))
    row = runs_json(tmp_path)[rd.run_id]
    assert row["status"] == "done" and row["epoch"] == 6 and row["best_val_acc"] == pytest.approx(0.76)


def test_a_writer_appending_after_a_torn_line_keeps_both_readable(tmp_path):
    """A worker killed mid-line leaves half an event; the next writer cuts it, so nothing is glued to it."""
    gdir = store(tmp_path)
    rd = gdir.run(config("full").run_id)
    whole = rd.events_file.read_bytes()
    with open(rd.events_file, "ab") as fh:
        fh.write(ev.Log(message="half").to_json().encode()[:20])  # no newline: the kill came mid-write
    writer = RunWriter(rd, echo=False)
    writer.emit(ev.Log(level="warning", message="after the kill"))
    writer.close()
    assert rd.events_file.read_bytes().startswith(whole)
    summary = load_run(rd).summary
    assert summary.unreadable_events == 0 and summary.warnings == ["after the kill"]
    assert rd.events()[0][-1].message == "after the kill"


async def test_the_tui_shows_every_run_and_the_bad_one_says_why(tmp_path):
    gdir = store(tmp_path / "runs")
    bad = gdir.run(config("frozen").run_id)
    append(bad, BAD_LINE)
    bad.summary_file.unlink()
    # the watcher alone: one poll, every run, the bad one counted
    snapshot = StoreWatcher(tmp_path / "runs").poll()
    assert {k: r.status for k, r in snapshot.runs.items()} == {f"g/{config(s).run_id}": "done" for s in STRATEGIES}
    assert snapshot.runs[f"g/{bad.run_id}"].summary.notes == ["1 unreadable event in its events.jsonl (skipped)"]
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(140, 36)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen)
                    and app.screen.query_one(RunsTable).row_count == 3)
        table = app.screen.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index(f"g/{bad.run_id}"))
        await pilot.pause()
        assert "reading the run store" not in screen_text(app)
        assert "! 1 unreadable event in its events.jsonl (skipped)" in screen_text(app)  # the run line
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail is not None)
        detail = app.screen.detail
        assert [e.epoch for e in detail.epochs] == [1, 2, 3, 4, 5, 6]
        assert detail.notes == ["1 unreadable event"]
        assert "1 unreadable event" in screen_text(app)


def test_the_detail_view_survives_a_bad_line_with_summary_intact(tmp_path):
    gdir = store(tmp_path)
    bad = gdir.run(config("frozen").run_id)
    append(bad, BAD_LINE, ev.Log(message="still read").to_json())
    tail = RunTail(bad.path)
    detail = tail.poll()
    assert [e.epoch for e in detail.epochs] == [1, 2, 3, 4, 5, 6]
    assert detail.logs[-1].message == "still read" and detail.unreadable_events == 1
    assert tail.poll() is None  # settled: no retry loop


async def test_a_truncated_event_stream_says_which_epochs_are_missing(tmp_path):
    gdir = store(tmp_path / "runs")
    rd = gdir.run(config("full").run_id)
    lines = rd.events_file.read_bytes().splitlines(keepends=True)
    rd.events_file.write_bytes(b"".join(lines[:3]))  # started + epochs 1 and 2; summary.json says epoch 6
    row = runs_json(tmp_path / "runs")[rd.run_id]
    assert row["status"] == "done" and row["epoch"] == 6  # the summary is kept
    assert row["notes"] == ["events are missing: events.jsonl is shorter than its summary (the summary is kept)"]
    detail = RunTail(rd.path).poll()
    assert [e.epoch for e in detail.epochs] == [1, 2] and detail.missing_epochs == [3, 4, 5, 6]
    assert detail.notes == ["events for epochs 3-6 are missing"]
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen)
                    and app.screen.query_one(RunsTable).row_count == 3)
        table = app.screen.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index(f"g/{rd.run_id}"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail is not None)
        await pilot.pause()
        assert "events for epochs 3-6 are missing" in screen_text(app)  # in the curves' titles


def test_queued_runs_of_a_grid_that_stopped_on_a_full_disk_say_so(tmp_path, monkeypatch):
    """A grid whose orchestrator stopped on a full disk couldn't even mark its queued runs: readers do."""
    import engine.store.summary as summary_module

    cfgs = [config(s) for s in STRATEGIES]
    gdir = add_to_grid(tmp_path, "g", cfgs)
    for cfg in cfgs:
        new_run(gdir, cfg)
    monkeypatch.setattr(summary_module, "free_megabytes", lambda path: 3.0)
    rec = load_run(gdir.run(cfgs[0].run_id))
    assert (rec.summary.status, rec.summary.error_kind) == ("failed", "disk_full")
    assert rec.summary.error == f"not started: its grid stopped; disk full: 3 MB free on {gdir.run(cfgs[0].run_id).path}; " \
                                "free some space, then run the grid again to resume"
    lock = gdir.lock()
    assert lock.acquire()  # an orchestrator drives the grid: its queued runs are just queued
    try:
        assert load_run(gdir.run(cfgs[0].run_id)).summary.status == "queued"
    finally:
        lock.release()
    monkeypatch.setattr(summary_module, "free_megabytes", lambda path: 5000.0)  # space is back
    assert load_run(gdir.run(cfgs[0].run_id)).summary.status == "queued"


def test_the_orchestrator_survives_a_full_disk_and_stops_the_grid_resumable(tmp_path, monkeypatch):
    """The issue's traceback (_mark -> atomic_write_json -> ENOSPC), injected: one DiskFull, no crash, queued
    runs not started, and the next run of the grid starts them (needs no tmpfs: see test_faults_grid for one)."""
    import errno

    import engine.store.writer as writer_module
    from engine import orchestrator as orch
    from engine.errors import DiskFull

    cfgs = [config(s) for s in STRATEGIES]
    gdir = add_to_grid(tmp_path, "g", cfgs)
    for cfg in cfgs:
        new_run(gdir, cfg)

    class Gone:  # a worker that met the full disk and could not even write its failed event
        pid = 2 ** 22 + 1

        def poll(self):
            return orch.EXIT_DISK_FULL

    launched = []

    class Launcher(SubprocessLauncher):
        def launch(self, run_dir, request, on_line):
            launched.append(run_dir.name)
            return Gone()

    real = writer_module.atomic_write_json

    def enospc(path, obj):
        raise DiskFull(path.parent) from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module, "atomic_write_json", enospc)
    with pytest.raises(DiskFull, match=rf"^disk full: \d+ MB free on {gdir.path}; free some space"):
        orch.Orchestrator(gdir.path, launcher=Launcher()).run()
    assert launched == [cfgs[0].run_id]  # nothing new started once the disk was full
    assert not gdir.running()
    monkeypatch.setattr(writer_module, "atomic_write_json", real)

    class Done:
        pid = 2 ** 22 + 1

        def poll(self):
            return 0

    class Finishing(SubprocessLauncher):
        def launch(self, run_dir, request, on_line):
            launched.append(run_dir.name)
            emit(RunDir(run_dir), finished_events(config(run_dir.name.rsplit("__", 1)[1]), [0.5], [1.0]))
            return Done()

    counts = orch.Orchestrator(gdir.path, launcher=Finishing()).run()
    assert counts == {"done": 3} and launched == [cfgs[0].run_id] + [c.run_id for c in cfgs]


def test_a_reader_bug_on_one_run_never_stalls_the_watcher_or_the_detail_view(tmp_path, monkeypatch):
    """Belt and braces: whatever goes wrong reading one run (here: a bug injected into the store's reader)
    shows on that run, and the other runs, and the next polls, go on."""
    import tui.run_tail as run_tail
    import tui.store_watcher as watcher_module

    gdir = store(tmp_path)
    bad = gdir.run(config("partial").run_id)
    real = watcher_module.load_run

    def buggy(run_dir, grid=""):
        if RunDir(run_dir if not isinstance(run_dir, RunDir) else run_dir.path) == bad:
            raise TypeError("unsupported operand type(s) for -: 'str' and 'int'")
        return real(run_dir, grid)

    monkeypatch.setattr(watcher_module, "load_run", buggy)
    watcher = StoreWatcher(tmp_path)
    snapshot = watcher.poll()
    states = {k.split("/")[1]: r for k, r in snapshot.runs.items()}
    assert {k: r.status for k, r in states.items()} == {config("frozen").run_id: "done",
                                                        config("partial").run_id: "unreadable",
                                                        config("full").run_id: "done"}
    assert states[bad.run_id].problem == ("can't read this run (TypeError: unsupported operand type(s) for -: 'str' "
                                          "and 'int'); other runs are not affected")
    assert watcher.poll() is None  # no retry storm: it waits for the run's files to change
    monkeypatch.setattr(watcher_module, "load_run", real)
    append(bad, ev.Log(message="touched").to_json())  # the files change: it is read again, fine now
    assert watcher.poll().runs[f"g/{bad.run_id}"].status == "done"

    def apply_fails(self, event):
        if isinstance(event, ev.Epoch) and event.epoch == 3:
            raise ValueError("a display bug")
        return real_apply(self, event)

    real_apply = run_tail.RunTail._apply
    monkeypatch.setattr(run_tail.RunTail, "_apply", apply_fails)
    detail = RunTail(bad.path).poll()
    assert [e.epoch for e in detail.epochs] == [1, 2, 4, 5, 6] and detail.unreadable_events == 1
