"""The TUI's store readers, without Textual: first load, incremental tailing, liveness, broken folders."""

from __future__ import annotations

import os

import pytest

from engine import events as ev
from engine.store import DEAD_WORKER, GridDir, RunDir, RunWriter, atomic_write_json
from tests.tui_fixtures import (
    NOW,
    append_events,
    hold_lock,
    next_epoch,
    run_config,
    run_events,
    store_failed,
    store_finished,
    store_running,
    write_events,
    write_grid,
    write_run,
)
from tui.run_tail import RunTail
from tui.store_watcher import EXPORT_EVERY, StoreWatcher


@pytest.fixture
def running(tmp_path):
    store = store_running(tmp_path / "runs")
    yield store
    store.release()


def test_first_load_reads_every_state(tmp_path, running):
    store_failed(tmp_path / "runs")
    snap = StoreWatcher(tmp_path / "runs").poll()
    status = {k: r.status for k, r in snap.runs.items()}
    assert status["live/footwear__efficientnet_lite0__frozen"] == "done"
    assert status["live/footwear__efficientnet_lite0__full"] == "running"
    assert status["live/footwear__resnet50__partial"] == "queued"
    assert status["broken/transport__resnet50__frozen"] == "failed"
    assert status["broken/transport__resnet50__full"] == "cancelled"
    assert status["broken/broken__resnet50__full"] == "unreadable"
    broken = snap.runs["broken/broken__resnet50__full"]
    assert f"{RunDir.CONFIG} is not valid JSON" in broken.problem
    full = snap.runs["broken/transport__resnet50__frozen"]
    assert full.summary.error == f"disk full: 3 MB free on {full.path}; free some space, then run the grid again to resume"
    assert full.summary.error_kind == "disk_full"
    # its events say running, but no worker holds its lock: the store's rule (settle) calls it dead
    dead = snap.runs["broken/transport__resnet50__partial"]
    assert (dead.status, dead.summary.error, dead.summary.error_kind) == ("failed", DEAD_WORKER, "killed")
    assert dead.summary.epoch == 2 and not dead.alive
    assert snap.grids["live"].running and not snap.grids["broken"].running
    # store order: grids sorted, runs in grid.json order, unknown folders last
    assert list(snap.runs)[:3] == ["broken/transport__resnet50__frozen", "broken/transport__resnet50__partial",
                                   "broken/transport__resnet50__full"]


def test_running_run_matches_its_events_not_the_lagging_summary(running):
    key = "live/footwear__resnet50__frozen"
    snap = StoreWatcher(running.root).poll()
    s = snap.runs[key].summary
    # the worker's writer does not rewrite the stored summary for progress events: the one after
    # the last epoch is only in the event stream, and the watcher has it
    assert RunDir(running.root / key).stored_summary()["step"] == 10
    assert (s.epoch, s.epochs, s.phase, s.step, s.steps) == (3, 6, "train", 5, 14)
    assert len(s.val_acc_history) == 3


def test_tailing_is_incremental(running):
    watcher = StoreWatcher(running.root)
    watcher.poll()
    assert watcher.poll() is None  # nothing changed, nothing published
    key = "live/footwear__resnet50__frozen"
    rdir = running.root / key
    tracker = watcher._trackers[key]
    before = tracker.offset
    append_events(rdir, [next_epoch(rdir, 4, 6, 0.81, NOW)])
    snap = watcher.poll()
    assert snap is not None
    s = snap.runs[key].summary
    assert s.epoch == 4 and s.val_acc == 0.81 and s.best_val_acc == 0.81
    assert tracker.offset == os.path.getsize(RunDir(rdir).events_file) > before
    # unchanged runs keep the very same published object (the UI compares by identity)
    other = "live/footwear__efficientnet_lite0__frozen"
    assert snap.runs[other] is watcher._trackers[other].state


def test_torn_last_line_waits_for_its_end(running):
    watcher = StoreWatcher(running.root)
    watcher.poll()
    key = "live/footwear__resnet50__frozen"
    line = next_epoch(running.root / key, 4, 6, 0.9, NOW).to_json() + "\n"
    events = RunDir(running.root / key).events_file
    with open(events, "a") as fh:  # half a line, as a reader may catch a worker's write
        fh.write(line[:20])
    snap = watcher.poll()
    assert snap is None or snap.runs[key].summary.epoch == 3
    with open(events, "a") as fh:
        fh.write(line[20:])
    assert watcher.poll().runs[key].summary.epoch == 4


def test_dead_worker_shows_failed_and_a_finish_wins(running):
    watcher = StoreWatcher(running.root)
    watcher.poll()
    key_dead, key_done = "live/footwear__efficientnet_lite0__full", "live/footwear__resnet50__frozen"
    # one worker finishes properly, then lets go of its lock; the other dies without a word
    append_events(running.root / key_done, [ev.Finished(ts=NOW, best_epoch=3, epochs_run=3, test={"accuracy": 0.9})])
    running.release()
    snap = watcher.poll()
    dead = snap.runs[key_dead]
    assert dead.status == "failed" and dead.summary.error == DEAD_WORKER and not dead.alive
    done = snap.runs[key_done]
    assert done.status == "done" and done.summary.test_accuracy == 0.9
    assert not snap.grids["live"].running


def test_dead_worker_on_a_full_disk_says_so(running, monkeypatch):
    """The watcher's dead-worker rule is the store's (settle): a nearly full disk is named as the likely cause."""
    import engine.store.summary as summary_rules

    monkeypatch.setattr(summary_rules, "free_megabytes", lambda path: 5.0)
    watcher = StoreWatcher(running.root)
    watcher.poll()
    running.release()
    dead = watcher.poll().runs["live/footwear__efficientnet_lite0__full"]
    assert dead.status == "failed" and dead.summary.error_kind == "disk_full"
    assert dead.summary.error.startswith(f"worker stopped without a final event; disk full: 5 MB free on {dead.path}")


def test_resumed_run_comes_back_to_life(running):
    watcher = StoreWatcher(running.root)
    key = "live/footwear__efficientnet_lite0__full"
    running.release()
    assert watcher.poll().runs[key].status == "failed"
    lock = hold_lock(RunDir(running.root / key).lock_file)
    try:
        append_events(running.root / key, [ev.Started(ts=NOW, run_id=key.split("/")[1], resumed_from_epoch=2)])
        r = watcher.poll().runs[key]
        assert r.status == "running" and r.summary.error == ""
    finally:
        lock.release()


def test_new_runs_and_grids_appear_and_vanish(tmp_path):
    root = tmp_path / "runs"
    watcher = StoreWatcher(root)
    assert watcher.poll().problem.endswith("does not exist yet")
    root.write_text("")  # a file where the store should be: said, not shown as an empty store
    assert watcher.poll().problem.endswith("is a file, not a folder; open the TUI with --runs on a folder")
    root.unlink()
    store_finished(root)
    snap = watcher.poll()
    assert len(snap.runs) == 12 and snap.problem == ""
    cfg = run_config("people", "vgg16", "full")
    gdir = write_grid(root, "later", [cfg])
    write_run(gdir, cfg, "queued")
    snap = watcher.poll()
    assert snap.runs["later/people__vgg16__full"].status == "queued"
    import shutil

    shutil.rmtree(gdir)
    snap = watcher.poll()
    assert "later" not in snap.grids and not any(k.startswith("later/") for k in snap.runs)


def test_corrupt_files_never_raise(tmp_path):
    root = tmp_path / "runs"
    store = store_finished(root, export=False)
    # every file below is corrupted on purpose, as no store writer would leave it
    rd = RunDir(root / "study" / "footwear__resnet50__full")
    rd.summary_file.write_text("{not json")  # falls back to folding the events
    rd.events_file.open("a").write("\x00\xff garbage\n{\"v\": 1}\n")
    export = RunDir(root / "study" / "footwear__resnet50__frozen").export
    export.path.mkdir()
    export.summary_file.write_text("[1, 2")
    (root / "junk").mkdir()  # no grid file: not a grid
    GridDir(root / "study").report_dir.mkdir()  # neither config nor events: not a run
    stray = RunDir(root / "study" / "stray")  # a run folder whose config never got written
    stray.path.mkdir()
    stray.events_file.write_text('{"v": 1, "type": "star')
    snap = StoreWatcher(root).poll()
    assert snap.runs["study/footwear__resnet50__full"].status == "done"
    assert snap.runs["study/footwear__resnet50__frozen"].export.status == "unreadable"
    assert snap.runs["study/stray"].status == "unreadable"
    assert f"{RunDir.CONFIG} is missing" in snap.runs["study/stray"].problem
    assert "junk" not in snap.grids and "study/report" not in snap.runs
    del store


def test_half_written_config_heals_when_completed(tmp_path):
    root = tmp_path / "runs"
    cfg = run_config("footwear", "resnet50", "full")
    gdir = write_grid(root, "g", [cfg])
    rd = RunDir(gdir / cfg.run_id)
    rd.path.mkdir()
    rd.config_file.write_text('{"data": {"dat')  # torn on purpose
    watcher = StoreWatcher(root)
    assert watcher.poll().runs[f"g/{cfg.run_id}"].status == "unreadable"
    rd.write_config(cfg)
    assert watcher.poll().runs[f"g/{cfg.run_id}"].status == "queued"


def test_export_summary_appears(tmp_path):
    root = tmp_path / "runs"
    store_finished(root, export=False)
    watcher = StoreWatcher(root)
    key = "study/transport__resnet50__full"
    assert watcher.poll().runs[key].export is None
    export = {"status": "ok", "onnx_accuracy": 0.9, "latency": {"CPUExecutionProvider": {"1": {"p50_ms": 2.5}}}}
    atomic_write_json(RunDir(root / key).export.summary_file, export)
    snaps = [watcher.poll() for _ in range(EXPORT_EVERY)]  # exports are looked for on every EXPORT_EVERY-th poll
    info = [s for s in snaps if s is not None][-1].runs[key].export
    assert info.cpu_b1_p50_ms == 2.5 and info.onnx_accuracy == 0.9


def test_done_run_whose_results_go_says_so_and_how_to_get_them_back(tmp_path):
    root = tmp_path / "runs"
    store_finished(root, export=False)
    watcher = StoreWatcher(root)
    key = "study/transport__resnet50__full"
    assert not watcher.poll().runs[key].summary.results_missing
    RunDir(root / key).results_file.unlink()
    snaps = [watcher.poll() for _ in range(EXPORT_EVERY)]  # looked at with the export, on the slow polls
    run = [s for s in snaps if s is not None][-1].runs[key]
    note = "results.json is missing (deleted?); `finetune-tui resume study` trains it again"  # no resume point
    assert run.status == "done" and run.summary.notes[0] == note
    assert StoreWatcher(root).poll().runs[key].summary.notes[0] == note  # a TUI opened afterwards says the same


def test_grid_folder_without_grid_json_is_shown_with_its_runs(tmp_path):
    root = tmp_path / "runs"
    store_finished(root, export=False)
    GridDir(root / "study").info_file.unlink()
    (root / "notes").mkdir()  # a folder of the user's, with no runs: not a grid
    snap = StoreWatcher(root).poll()
    assert list(snap.grids) == ["study"] and len(snap.runs) == len(list((root / "study").iterdir()))
    assert snap.grids["study"].problem.startswith(f"{root / 'study' / 'grid.json'} is missing: its runs are shown")


def test_queued_runs_of_a_grid_no_orchestrator_drives_say_so_until_it_runs_again(tmp_path):
    # an orchestrator killed (or dead at start) left its queued runs "queued" without a word
    from engine.store import load_run

    store = store_running(tmp_path / "runs")
    watcher = StoreWatcher(store.root)
    queued = [k for k, r in watcher.poll().runs.items() if r.status == "queued"]
    assert queued and all(not watcher.snapshot.runs[k].summary.notes for k in queued)
    grid_lock, *workers = store.locks
    grid_lock.release()  # the orchestrator is gone; two workers still hold their runs
    stalled = ("queued, but grid live is not running (its orchestrator stopped: see orchestrator.log in the grid's "
               "folder); `finetune-tui resume live` starts it")
    runs = watcher.poll().runs
    assert all(runs[k].summary.notes == [stalled] for k in queued)
    assert load_run(RunDir(store.root / queued[0])).summary.notes == [stalled]  # `runs` says the same
    assert all(stalled not in r.summary.notes for k, r in runs.items() if k not in queued)
    store.locks = [hold_lock(GridDir(store.root / "live").lock_file), *workers]  # resumed
    runs = watcher.poll().runs
    assert all(runs[k].summary.notes == [] for k in queued)
    store.release()


def test_run_tail_follows_one_run(running):
    rdir = running.root / "live" / "footwear__resnet50__frozen"
    tail = RunTail(rdir)
    d = tail.poll()
    assert [e.epoch for e in d.epochs] == [1, 2, 3]
    assert d.started.groups[-1] == "head" and d.results is None and d.final is None
    assert tail.poll() is None
    append_events(rdir, [next_epoch(rdir, 4, 6, 0.8, NOW), ev.Log(ts=NOW, level="warning", message="hot GPU")])
    d = tail.poll()
    assert [e.epoch for e in d.epochs] == [1, 2, 3, 4]
    assert d.logs[-1].message == "hot GPU" and d.logs[-1].level == "warning"
    # a resumed worker replays from its checkpoint: epochs past it are dropped
    append_events(rdir, [next_epoch(rdir, 3, 6, 0.7, NOW)])
    assert [e.epoch for e in tail.poll().epochs] == [1, 2, 3]
    changes = dict((g, c) for g, _, _, c in d.norm_changes())
    assert changes["head"] > 0


def test_run_tail_reads_results_of_a_finished_run(tmp_path):
    store_finished(tmp_path / "runs")
    d = RunTail(tmp_path / "runs" / "study" / "footwear__resnet50__partial").poll()
    assert d.results["classes"] == ["sandal", "sneaker", "ankle boot"]
    assert len(d.results["confusion_matrix"]) == 3
    assert isinstance(d.final, ev.Finished)
    assert d.export["status"] == "ok"


def test_a_time_budget_loads_a_big_store_in_steps(tmp_path):
    store_finished(tmp_path / "runs")
    watcher = StoreWatcher(tmp_path / "runs")
    first = watcher.poll(budget=0.0)  # at least nothing is lost: the next polls bring the rest
    assert watcher.pending and len(first.runs) < 12
    sizes = [len(first.runs)]
    while watcher.pending:
        sizes.append(len(watcher.poll(budget=0.0).runs))
    assert sizes[-1] == 12 and sizes == sorted(sizes)


@pytest.mark.parametrize("state,epochs", [("done", 4), ("running", 3), ("failed", 2), ("cancelled", 1)])
def test_fixtures_write_what_a_run_writer_writes(tmp_path, state, epochs):
    """The fixtures write a run's events in one go; a worker's RunWriter, event by event, leaves the same files."""
    cfg = run_config("footwear", "resnet50", "partial")
    runs = {}
    for way in ("bulk", "writer"):
        rd = RunDir(write_grid(tmp_path / way, "g", [cfg]) / cfg.run_id)
        rd.write_config(cfg)
        events = run_events(cfg, state, epochs, run_dir=tmp_path / "same")
        if way == "bulk":
            write_events(rd, events)
        else:
            writer = RunWriter(rd, echo=False)
            for e in events:
                writer.emit(e)
            writer.close()
        runs[way] = rd
    bulk, real = runs["bulk"], runs["writer"]
    assert bulk.events_file.read_bytes() == real.events_file.read_bytes()
    assert bulk.stored_summary() == real.stored_summary()
    assert bulk.stored_summary()["status"] == state
