"""Fault suite, real grids (issue 15, items 2, 4 and 7, and the fault matrix's passing cases).

Each test drives `finetune-tui` as a user would, on the smallest real grid (digits, timm's tiny
test_efficientnet, 32 px, one thread), breaks something on the way (a full disk, a second start, Ctrl-C,
a tampered checkpoint, SIGKILL, a corrupt image, a tampered dataset pickle, unicode paths, TUIs opened
and closed) and checks: no traceback, the one line a user gets, the exit code, and that no result is lost
(the grid resumes to its end).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import threading
from pathlib import Path

import pytest

from engine import events as ev
from engine.store import GridDir, RunDir, load_run
from tests.data_fixtures import write_cifar10, write_image_class
from tests.faults_fixtures import (
    TINY,
    cli,
    cli_background,
    fill,
    mount_tmpfs,
    one_line,
    paused,
    results_of,
    rows,
    stop_all,
    unmount,
    wait_for,
)
from tests.tui_fixtures import until
from tui.actions import ActionError, StoreActions
from tui.store_watcher import StoreWatcher
from tui.theme import Palette
from tui.widgets.run_line import describe

# keeps a run training until the test stops it (full: every epoch backpropagates; frozen epochs are nearly free)
LONG = ["--strategies", "full", "--epochs", "300", "--set", "train.patience=300"]
FROZEN, FULL = "digits__test_efficientnet__frozen", "digits__test_efficientnet__full"


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "runs"
    yield root
    stop_all(root)


def epoch_of(rd: RunDir) -> int:
    return load_run(rd).summary.epoch


def lock_pid(path: Path) -> int:
    return int(path.read_text().strip())


class Evil:
    """A pickle that runs a command when loaded: what a refused file must never do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- item 2: a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    fs = mount_tmpfs(tmp_path / "fs", size_mb=32)
    yield fs
    stop_all(fs)
    unmount(fs)


def test_a_full_disk_stops_the_grid_with_one_line_and_it_resumes(small_fs):
    # the backpropagating run goes first: it is stopped mid-run (SIGSTOP after its first epoch) while the disk
    # fills, so its next checkpoint, event or summary write meets ENOSPC however fast the machine is
    args = ["run", *TINY, "--strategies", "full,frozen", "--epochs", "3", "--set", "train.patience=3",
            "--name", "g", "--runs", str(small_fs)]
    proc = cli_background(*args)
    gdir = GridDir(small_fs / "g")
    first = gdir.run(FULL)
    assert wait_for(lambda: first.events_file.exists() and epoch_of(first) >= 1, every=0.02)
    with paused(lock_pid(first.lock_file)):
        assert not first.results_file.exists() and epoch_of(first) < 3, "the first run ended before it was paused"
        dummy = fill(small_fs, leave=0)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, out + err
    assert re.fullmatch(rf"finetune-tui: error: disk full: \d+ MB free on {re.escape(str(gdir.path))}; free some "
                        r"space, then run the grid again to resume", one_line(err))
    assert not gdir.running()
    # nothing is left "queued" or "running" with nothing driving it: both say the disk is full
    got = rows(small_fs)
    assert {r: (got[r]["status"], got[r]["error_kind"]) for r in got} == {FULL: ("failed", "disk_full"),
                                                                            FROZEN: ("failed", "disk_full")}
    assert all("disk full: " in got[r]["error"] for r in got)
    # marked by the orchestrator where the disk still took it, else read so by settle (its grid stopped)
    assert re.match(r"not started: (its grid stopped; )?disk full: ", got[FROZEN]["error"]), got[FROZEN]["error"]
    listing = " ".join(cli("runs", "--runs", str(small_fs)).stdout.split())
    assert re.search(rf"g/{FROZEN}: failed \(disk full\): not started: (its grid stopped; )?disk full:", listing)
    tui = StoreWatcher(small_fs).poll().runs  # the TUI's reader says the same
    assert {k: (r.status, r.summary.error_kind) for k, r in tui.items()} == {
        f"g/{FULL}": ("failed", "disk_full"), f"g/{FROZEN}": ("failed", "disk_full")}
    # space back: the same command resumes the grid to its end, the first run from its checkpoint
    dummy.unlink()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert {r: row["status"] for r, row in rows(small_fs).items()} == {FROZEN: "done", FULL: "done"}
    starts = [e for e in first.events()[0] if isinstance(e, ev.Started)]
    assert starts[-1].resumed_from_epoch >= 1
    assert set(results_of(small_fs)) == {f"g/{r}/{f}" for r in (FROZEN, FULL)
                                         for f in ("results.json", "best.safetensors")}


# --- item 4: starting one grid twice at once ----------------------------------------------------------------


def test_two_detached_starts_at_once_the_second_says_already_running(store):
    args = ["run", *TINY, *LONG, "--name", "twice", "--runs", str(store), "--detach"]
    procs = [cli_background(*args) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    ok, busy = sorted(zip(procs, outs), key=lambda po: po[0].returncode)
    assert "started in the background" in ok[1][0]
    assert one_line(busy[1][1]) == "finetune-tui: error: grid 'twice' is already running"
    gdir = GridDir(store / "twice")
    assert gdir.running()
    assert wait_for(lambda: epoch_of(gdir.run(FULL)) >= 1)
    # the TUI's resume, pressed in two TUIs at once on a stopped grid: one starts it, one is told
    gdir.request_cancel("test")
    assert wait_for(lambda: not gdir.running())
    actions, results = StoreActions(store), []

    def resume():
        try:
            results.append(actions.resume_grid("twice"))
        except ActionError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert sorted(results) == ["grid 'twice' is already running", "twice"]
    assert gdir.running()
    # a cancel sent the moment the start returned (its orchestrator still starting up) is not lost
    r = cli("cancel", "twice", "--runs", str(store))
    assert r.returncode == 0 and "asked grid twice to stop" in r.stdout
    assert wait_for(lambda: not gdir.running(), timeout=120)
    assert load_run(gdir.run(FULL)).summary.status == "cancelled"


# --- Ctrl-C, then item 7: a resume point that is refused ------------------------------------------------------


def test_ctrl_c_keeps_the_run_resumable_and_a_tampered_resume_point_restarts_it_with_a_notice(store, tmp_path):
    args = ["run", *TINY, "--strategies", "full", "--epochs", "3", "--set", "train.patience=3", "--name", "c",
            "--runs", str(store)]
    proc = cli_background(*args, start_new_session=True)
    rd = GridDir(store / "c").run(FULL)
    assert wait_for(lambda: rd.events_file.exists() and epoch_of(rd) >= 1 and rd.state_file.exists(), every=0.02)
    with paused(lock_pid(rd.lock_file)):  # the worker gets its Ctrl-C mid-run, however fast it trains
        assert epoch_of(rd) < 3, "the run ended before it was paused"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, out + err
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "interrupted: unfinished runs stay resumable; run the same command again to resume"]
    assert load_run(rd).summary.status == "cancelled"
    # a tampered resume point: loading it would run a command
    marker = tmp_path / "pwned"
    with open(rd.state_file, "wb") as fh:
        pickle.dump({"model": Evil(marker)}, fh)
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert not marker.exists()
    notice = ("checkpoint refused: last_state.pt is damaged or was not written by finetune-tui (UnpicklingError); "
              "restarted from scratch")
    events = rd.events()[0]
    assert [e.resumed_from_epoch for e in events if isinstance(e, ev.Started)] == [0, 0]
    assert [e.message for e in events if isinstance(e, ev.Log) and e.level == "warning"] == [notice]
    assert "weights_only=False" not in rd.worker_log.read_text() + rd.events_file.read_text()
    # said outside worker.log: in `runs`, in the TUI's run line and header
    row = rows(store)[FULL]
    assert row["status"] == "done" and row["warnings"] == [notice] and row["notes"] == [notice]
    assert f"c/{FULL}: {notice}" in " ".join(cli("runs", "--runs", str(store)).stdout.split())
    run = StoreWatcher(store).poll().runs[f"c/{FULL}"]
    assert notice in describe(run, Palette()).plain
    assert rd.results()["epochs_run"] == 3 and rd.metrics().epoch.tolist() == [1, 2, 3]  # all of it, retrained


def test_sigterm_to_a_foreground_run_stops_its_worker_and_leaves_the_run_resumable(store):
    args = ["run", *TINY, "--strategies", "full", "--epochs", "3", "--set", "train.patience=3", "--name", "t",
            "--runs", str(store)]
    proc = cli_background(*args, start_new_session=True)
    rd = GridDir(store / "t").run(FULL)
    assert wait_for(lambda: rd.events_file.exists() and epoch_of(rd) >= 1, every=0.02)
    worker = load_run(rd).summary.pid
    with paused(worker):  # so the stop reaches it mid-run, however fast it trains
        assert epoch_of(rd) < 3, "the run ended before it was paused"
        proc.send_signal(signal.SIGTERM)  # the command alone (a service manager, `kill PID`), not its group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, err
    assert wait_for(lambda: not pid_alive(worker), timeout=30), "the worker outlived its grid"
    assert load_run(rd).summary.status == "cancelled"
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    starts = [e for e in rd.events()[0] if isinstance(e, ev.Started)]
    assert starts[-1].resumed_from_epoch >= 1


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
        return fh.read().split(")")[-1].split()[0] != "Z"


# --- SIGKILL of a worker, of the orchestrator ----------------------------------------------------------------


def test_sigkill_of_a_worker_marks_it_killed_and_resume_continues_from_its_checkpoint(store):
    args = ["--strategies", "full", "--epochs", "4", "--set", "train.patience=4", "--name", "k"]
    r = cli("run", *TINY, *args, "--runs", str(store), "--detach")
    assert r.returncode == 0, r.stderr
    gdir = GridDir(store / "k")
    rd = gdir.run(FULL)
    assert wait_for(lambda: rd.events_file.exists() and epoch_of(rd) >= 1 and rd.state_file.exists())
    os.kill(lock_pid(rd.lock_file), signal.SIGKILL)
    assert wait_for(lambda: not gdir.running())
    row = rows(store)[FULL]
    assert (row["status"], row["error_kind"], row["error"]) == ("failed", "killed", "worker killed by SIGKILL")
    assert "k/digits__test_efficientnet__full: failed (killed): worker killed by SIGKILL" in " ".join(
        cli("runs", "--runs", str(store)).stdout.split())
    r = cli("resume", "k", "--runs", str(store))
    assert r.returncode == 0 and "resumed in the background" in r.stdout
    assert wait_for(lambda: not gdir.running() and load_run(rd).summary.status == "done", timeout=180)
    starts = [e for e in rd.events()[0] if isinstance(e, ev.Started)]
    assert starts[0].resumed_from_epoch == 0 and starts[-1].resumed_from_epoch >= 1
    assert rd.results()["epochs_run"] == 4


def test_sigkill_of_the_orchestrator_leaves_its_worker_training_and_the_next_one_adopts_it(store):
    r = cli("run", *TINY, *LONG, "--name", "o", "--runs", str(store), "--detach")
    assert r.returncode == 0, r.stderr
    gdir = GridDir(store / "o")
    rd = gdir.run(FULL)
    assert wait_for(lambda: rd.events_file.exists() and epoch_of(rd) >= 1)
    worker = lock_pid(rd.lock_file)
    os.kill(lock_pid(gdir.lock_file), signal.SIGKILL)
    assert wait_for(lambda: not gdir.running(), timeout=10)
    assert rd.alive() and rows(store)[FULL]["status"] == "running"  # its worker trains on, alone
    reached = epoch_of(rd)
    assert wait_for(lambda: epoch_of(rd) > reached)
    r = cli("resume", "o", "--runs", str(store))  # the next orchestrator adopts it rather than start another
    assert r.returncode == 0 and "resumed in the background" in r.stdout
    assert gdir.running() and lock_pid(rd.lock_file) == worker
    assert wait_for(lambda: f"{FULL}: adopting a live worker" in gdir.orchestrator_log.read_text())
    r = cli("cancel", "o", "--runs", str(store))
    assert r.returncode == 0 and "asked grid o to stop" in r.stdout
    assert wait_for(lambda: not gdir.running() and not rd.alive())
    row = rows(store)[FULL]
    assert row["status"] == "cancelled" and row["epoch"] > reached
    assert rd.state_file.is_file() and rd.has_checkpoint()  # resumable from where it stopped
    assert len([e for e in rd.events()[0] if isinstance(e, ev.Started)]) == 1  # trained by one worker only


# --- TUIs: two at once, then closed while the grid trains --------------------------------------------------


async def test_two_tuis_watch_one_grid_and_closing_them_leaves_it_training(store):
    from tests.tui_fixtures import make_app
    from tui.screens.runs import RunsScreen
    from tui.widgets.runs_table import RunsTable

    r = cli("run", *TINY, *LONG, "--name", "t", "--runs", str(store), "--detach")
    assert r.returncode == 0, r.stderr
    gdir = GridDir(store / "t")
    rd = gdir.run(FULL)
    key = f"t/{FULL}"
    first, second = make_app(store), make_app(store)
    async with first.run_test(size=(120, 30)) as p1, second.run_test(size=(120, 30)) as p2:
        for app, pilot in ((first, p1), (second, p2)):
            await until(pilot, lambda app=app: isinstance(app.screen, RunsScreen)
                        and app.screen.query_one(RunsTable).row_count == 1, timeout=30)
            await until(pilot, lambda app=app: app.snapshot.runs[key].summary.epoch >= 1, timeout=90)
            assert app.snapshot.grids["t"].running and app.snapshot.runs[key].status == "running"
    closed_at = epoch_of(rd)
    assert wait_for(lambda: epoch_of(rd) > closed_at)  # both TUIs closed: the grid trains on
    assert gdir.running() and rd.alive()
    assert cli("cancel", "t", "--runs", str(store)).returncode == 0
    assert wait_for(lambda: not gdir.running())
    assert load_run(rd).summary.status == "cancelled" and rd.has_checkpoint()


# --- data: a corrupt image under unicode paths, a tampered dataset pickle --------------------------------------


def test_a_corrupt_image_is_one_line_and_unicode_paths_train_once_it_is_gone(tmp_path):
    """Item 9: the folder is scanned once before the grid starts; every unreadable file is in the one line."""
    store = tmp_path / "rüns ✓"
    images = tmp_path / "bilder ✓"
    for label, name in enumerate(("äpfel", "birnen ✓")):
        write_image_class(images / name, label, 12)
    broken = [images / "äpfel" / "kaputt.png", images / "birnen ✓" / "leer ✓.jpg"]
    broken[0].write_bytes(b"not a png at all")
    broken[1].write_bytes(b"\xff\xd8 a jpeg header and nothing else")
    args = ["run", *TINY, "--datasets", f"imagefolder:{images}", "--strategies", "frozen", "--epochs", "1",
            "--name", "u", "--runs", str(store)]
    r = cli(*args)
    assert "Traceback" not in r.stdout + r.stderr
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)  # the folder named once, each file relative to it
    assert str(images) in line and "2 unreadable images" in line
    assert "äpfel/kaputt.png (cannot identify image file)" in line
    assert "birnen ✓/leer ✓.jpg (cannot identify image file)" in line
    assert not (store / "u").exists()  # refused before the grid was written: nothing started
    for f in broken:
        f.unlink()
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    (row,) = rows(store).values()
    assert row["status"] == "done"
    (rec,) = [rd for rd in GridDir(store / "u").run_dirs()]
    assert rec.results()["classes"] == ["birnen ✓", "äpfel"] or set(rec.results()["classes"]) == {"äpfel",
                                                                                                   "birnen ✓"}


def test_a_tampered_dataset_pickle_is_refused_in_one_line_and_never_run(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data)
    marker = tmp_path / "pwned"
    with open(data / "cifar-10-batches-py" / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": Evil(marker)}, fh)
    r = cli("run", *TINY, "--datasets", "cifar10", "--data-root", str(data), "--strategies", "frozen",
            "--epochs", "1", "--name", "p", "--runs", str(tmp_path / "runs"))
    assert "Traceback" not in r.stdout + r.stderr and not marker.exists()
    (row,) = rows(tmp_path / "runs").values()
    assert r.returncode == 1 and row["status"] == "failed" and row["error_kind"] == "user"
    assert row["error"] == (f"{data / 'cifar-10-batches-py' / 'data_batch_3'}: refusing to unpickle posix.system; "
                            "dataset pickles may hold only numpy arrays, lists, dicts and strings "
                            "(is this really a CIFAR file?)")
