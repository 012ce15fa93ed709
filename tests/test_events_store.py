import json
import os
import subprocess
import sys

import pytest

from engine import events as ev
from engine.store import (
    DEAD_WORKER,
    FileLock,
    RunStore,
    RunSummary,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    is_locked,
    load_run,
)


def test_event_round_trip_and_version():
    e = ev.Epoch(epoch=3, epochs=20, train_loss=0.5, val_acc=0.9, group_norms={"blocks.0": 1.5})
    obj = json.loads(e.to_json())
    assert obj["v"] == ev.SCHEMA_VERSION and obj["type"] == "epoch"
    back = ev.parse_event(e.to_json())
    assert back == e


def test_reader_ignores_unknown_fields_types_and_torn_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    newer = dict(json.loads(ev.Log(message="hi").to_json()), extra_field=1)
    lines = [ev.Started(run_id="r").to_json(), json.dumps(newer), '{"type":"from_the_future","v":9}', "garbage",
             ev.Epoch(epoch=1).to_json()]
    path.write_text("\n".join(lines) + "\n" + ev.Epoch(epoch=2).to_json()[:30])  # torn last line
    events, offset = ev.read_events(path)
    assert [type(e).__name__ for e in events] == ["Started", "Log", "Epoch"]
    assert events[1].message == "hi"
    assert offset == len("\n".join(lines)) + 1
    # the rest of the torn line arrives: reading on from the offset gets it, once
    with open(path, "a") as fh:
        fh.write(ev.Epoch(epoch=2).to_json()[30:] + "\n")
    more, _ = ev.read_events(path, offset)
    assert [e.epoch for e in more] == [2]


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"accuracy": 0.9})

    class Boom(Exception):
        pass

    from engine.store import atomic_write

    def bad(tmp):
        with open(tmp, "w") as fh:
            fh.write('{"accuracy": 0.')  # half-written
        raise Boom

    with pytest.raises(Boom):
        atomic_write(target, bad)
    assert json.loads(target.read_text()) == {"accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp files left


def test_atomic_write_survives_sigkill_mid_write(tmp_path):
    """A process killed while rewriting a file in a loop never leaves it torn."""
    target = tmp_path / "summary.json"
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from engine.store import atomic_write_json\n"
        "i = 0\n"
        "while True:\n"
        "    atomic_write_json(%r, {'i': i, 'pad': 'x' * 200000}); i += 1\n"
    ) % (os.getcwd(), str(target))
    proc = subprocess.Popen([sys.executable, "-c", code])
    import time

    deadline = time.time() + 20
    while not target.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    obj = json.loads(target.read_text())
    assert obj["i"] >= 0 and len(obj["pad"]) == 200000


def _run_folder(tmp_path, events=(), config=True):
    rdir = tmp_path / "g" / "ds__bb__frozen"
    rdir.mkdir(parents=True)
    if config:
        from engine.config import RunConfig

        atomic_write_json(rdir / "config.json", RunConfig().to_dict())
    (rdir / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    return rdir


def test_load_run_folds_events_when_summary_missing(tmp_path):
    rdir = _run_folder(tmp_path, [
        ev.Started(run_id="x", config={"train": {"epochs": 5}}),
        ev.Epoch(epoch=1, epochs=5, val_acc=0.5, seconds=2.0),
        ev.Epoch(epoch=2, epochs=5, val_acc=0.7, seconds=4.0, is_best=True),
        ev.Finished(best_epoch=2, test={"accuracy": 0.71, "f1_macro": 0.69}),
    ])
    rec = load_run(rdir)
    s = rec.summary
    assert not rec.problem
    assert (s.status, s.epoch, s.best_val_acc, s.best_epoch, s.test_accuracy) == ("done", 2, 0.7, 2, 0.71)
    assert s.val_acc_history == [0.5, 0.7]


def test_dead_worker_detected_through_lock(tmp_path):
    rdir = _run_folder(tmp_path, [ev.Started(run_id="x"), ev.Epoch(epoch=1, epochs=5, seconds=3.0)])
    lock = FileLock(rdir / "run.lock")
    assert lock.acquire()
    assert is_locked(rdir / "run.lock")
    s = load_run(rdir).summary
    assert s.status == "running" and s.eta_seconds == pytest.approx(12.0)
    lock.release()
    s = load_run(rdir).summary
    assert s.status == "failed" and s.error == DEAD_WORKER


def test_resumed_run_history_is_replaced_not_appended(tmp_path):
    rdir = _run_folder(tmp_path, [
        ev.Started(), ev.Epoch(epoch=1, val_acc=0.5), ev.Epoch(epoch=2, val_acc=0.6),
        ev.Started(resumed_from_epoch=1), ev.Epoch(epoch=2, val_acc=0.65), ev.Epoch(epoch=3, val_acc=0.8),
    ])
    FileLock(rdir / "run.lock")
    s = load_run(rdir).summary
    assert s.val_acc_history == [0.5, 0.65, 0.8]


def test_a_cancelled_run_queued_again_reads_queued_and_keeps_its_epochs_and_time(tmp_path):
    from tui.columns import elapsed_seconds
    from tui.run_tail import RunTail
    from tui.store_watcher import RunState

    rdir = _run_folder(tmp_path, [
        ev.Started(ts=100.0), ev.Epoch(epoch=1, val_acc=0.5, ts=150.0),
        ev.Cancelled(reason="grid cancelled by user", epoch=1, ts=160.0),
        ev.Queued(reason="grid resumed; waiting for a worker", ts=1000.0),
    ])
    s = load_run(rdir).summary
    assert (s.status, s.error, s.error_kind, s.epoch, s.val_acc_history) == ("queued", "", "", 1, [0.5])
    # the minute it trained, not the quarter of an hour until the resume
    assert elapsed_seconds(RunState(key="g/r", path=rdir, summary=s), now=1200.0) == 60.0
    detail = RunTail(rdir).poll()
    assert detail.final is None and detail.logs[-1].message == "queued: grid resumed; waiting for a worker"


@pytest.mark.parametrize("damage", ["missing", "torn", "empty-object"])
def test_corrupt_run_folder_is_unreadable_with_reason(tmp_path, damage):
    rdir = _run_folder(tmp_path, config=False)
    if damage == "torn":
        atomic_write_text(rdir / "config.json", '{"data": {"dataset": "x"')
    elif damage == "empty-object":
        atomic_write_text(rdir / "config.json", "{}")
    rec = load_run(rdir)
    assert rec.summary.status == "unreadable"
    assert "config.json" in rec.problem
    # the store lists it rather than failing
    atomic_write_json(tmp_path / "g" / "grid.json", {"name": "g", "runs": []})
    assert [r.summary.status for r in RunStore(tmp_path).runs("g")] == ["unreadable"]


def test_summary_round_trip_ignores_unknown_keys():
    s = RunSummary(run_id="a", status="done", test_accuracy=0.9)
    d = s.to_dict() | {"added_later": 1}
    assert RunSummary.from_dict(d) == s


def test_store_files_get_the_usual_mode_even_from_writers_that_make_0600_files(tmp_path):
    """safetensors writes a 0600 temp file of its own; store files are as readable as any other file."""
    import stat

    import torch
    from safetensors.torch import save_file

    from engine.store.atomic import FILE_MODE

    target = tmp_path / "best.safetensors"
    atomic_write(target, lambda tmp: save_file({"w": torch.zeros(2)}, tmp))
    atomic_write_json(tmp_path / "results.json", {"accuracy": 1.0})
    for path in (target, tmp_path / "results.json"):
        assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert FILE_MODE & 0o044  # group and others can read (with the usual umask 022)
