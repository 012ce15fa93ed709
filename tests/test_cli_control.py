"""The CLI's grid control as a user drives it: run --detach, run --tui, runs, cancel, resume; the orchestrator
adopting a live worker and killing one that ignores its cancel; GPU pinning; one-line errors for the unexpected."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import events as ev
from engine import orchestrator as orch
from engine.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from engine.launcher import SubprocessLauncher, worker_command
from engine.store import GridDir, RunStore, load_run

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--datasets", "digits", "--backbones", "test_efficientnet", "--head", "linear", "--weights", "random",
        "--image-size", "32", "--set", "train.threads=1"]
BASE = RunConfig(data=DataConfig(dataset="digits", image_size=32), model=ModelConfig(backbone="test_efficientnet",
                 head="linear", weights="random"), train=TrainConfig(epochs=2, threads=1))


def cli(*args, timeout=180):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def wait_for(predicate, timeout=120.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def statuses(root, grid):
    return {r.run_id: r.summary.status for r in RunStore(root).runs(grid)}


@pytest.fixture
def stop_grids(tmp_path):
    """Whatever a test starts in the background is cancelled and waited for at the end."""
    yield
    store = RunStore(tmp_path)
    for name in store.grids():
        gdir = store.grid(name)
        if gdir.running():
            gdir.request_cancel("test over")
            wait_for(lambda: not gdir.running(), timeout=60)


def test_detach_then_runs_cancel_and_resume(tmp_path, stop_grids):
    root = str(tmp_path)
    r = cli("run", *FAST, "--strategies", "frozen,full", "--epochs", "400", "--set", "train.patience=400",
            "--name", "bg", "--runs", root, "--detach")
    assert r.returncode == 0, r.stderr
    assert "started in the background" in r.stdout
    gdir = GridDir(tmp_path / "bg")
    assert gdir.running()  # the command returned once the orchestrator held the grid
    frozen = gdir.run("digits__test_efficientnet__frozen")
    assert wait_for(lambda: load_run(frozen).summary.epoch >= 1)

    # the same grid started again while it runs: refused, one line
    again = cli("resume", "bg", "--runs", root)
    assert again.returncode == 2 and "already running" in again.stderr and "Traceback" not in again.stderr

    listing = cli("runs", "--runs", root, "--grid", "bg", "--format", "json")
    rows = {row["run_id"]: row for row in json.loads(listing.stdout)}
    assert rows["digits__test_efficientnet__frozen"]["status"] == "running"
    assert rows["digits__test_efficientnet__full"]["status"] == "queued"

    # cancel one run from the CLI: its worker stops at its next step; then the whole grid
    r = cli("cancel", "bg", "digits__test_efficientnet__frozen", "--runs", root)
    assert r.returncode == 0 and "asked digits__test_efficientnet__frozen to stop" in r.stdout
    assert wait_for(lambda: load_run(frozen).summary.status == "cancelled")
    assert wait_for(lambda: load_run(gdir.run("digits__test_efficientnet__full")).summary.status == "running")
    assert cli("cancel", "bg", "--runs", root).returncode == 0
    assert wait_for(lambda: not gdir.running())
    assert statuses(root, "bg") == {"digits__test_efficientnet__frozen": "cancelled",
                                    "digits__test_efficientnet__full": "cancelled"}

    # resume restarts the runs from their last checkpoint, in the background
    def starts():
        return [e for e in frozen.events()[0] if isinstance(e, ev.Started)]

    before = len(starts())
    r = cli("resume", "bg", "--runs", root)
    assert r.returncode == 0 and "resumed in the background" in r.stdout
    assert wait_for(lambda: len(starts()) == before + 1)
    assert starts()[-1].resumed_from_epoch >= 1
    # the run whose turn hasn't come reads queued from the resume on, not cancelled with last time's reason
    waiting = load_run(gdir.run("digits__test_efficientnet__full")).summary
    assert (waiting.status, waiting.error) == ("queued", "")
    rows = {row["run_id"]: row for row in json.loads(cli("runs", "--runs", root, "--grid", "bg", "--format",
                                                         "json").stdout)}
    assert (rows["digits__test_efficientnet__full"]["status"], rows["digits__test_efficientnet__full"]["error"]) \
        == ("queued", "")
    assert cli("cancel", "bg", "--runs", root).returncode == 0
    assert wait_for(lambda: not gdir.running())


def test_run_detach_finishes_and_cli_names_unknown_grids_and_runs(tmp_path, stop_grids):
    root = str(tmp_path)
    r = cli("run", *FAST, "--strategies", "frozen", "--epochs", "1", "--name", "quick", "--runs", root, "--detach")
    assert r.returncode == 0, r.stderr
    gdir = GridDir(tmp_path / "quick")
    assert wait_for(lambda: not gdir.running(), timeout=180)
    assert statuses(root, "quick") == {"digits__test_efficientnet__frozen": "done"}
    results = gdir.run("digits__test_efficientnet__frozen").results()
    assert results["n_test"] > 0 and 0.0 <= results["accuracy"] <= 1.0
    r = cli("cancel", "quick", "no_such_run", "--runs", root)
    assert r.returncode == 2 and "no run 'no_such_run' in grid 'quick'" in r.stderr
    r = cli("resume", "nope", "--runs", root)
    assert r.returncode == 2 and "no grid 'nope'" in r.stderr and "grids there: quick" in r.stderr
    r = cli("resume", "../elsewhere", "--runs", root)
    assert r.returncode == 2 and "not a path" in r.stderr


def test_run_tui_starts_detached_then_opens_the_tui_on_the_grid(tmp_path, monkeypatch, stop_grids):
    import tui.app
    from finetune_tui import cli as cli_module

    opened = []
    monkeypatch.setattr(tui.app, "run_app", lambda root, grid=None: opened.append((Path(root), grid)) or 0)
    code = cli_module.main(["run", *FAST, "--strategies", "frozen", "--epochs", "1", "--name", "watch",
                            "--runs", str(tmp_path), "--tui"])
    assert code == 0
    assert opened == [(tmp_path, "watch")]
    gdir = GridDir(tmp_path / "watch")
    assert gdir.exists()
    assert wait_for(lambda: not gdir.running(), timeout=180)
    assert statuses(tmp_path, "watch") == {"digits__test_efficientnet__frozen": "done"}


class CountingLauncher(SubprocessLauncher):
    def __init__(self):
        self.launched = []

    def launch(self, run_dir, request, on_line):
        self.launched.append(Path(run_dir).name)
        return super().launch(run_dir, request, on_line)


def test_orchestrator_adopts_a_live_worker_and_keeps_its_cancel(tmp_path):
    """A worker left by a dead orchestrator is waited for, not trained twice; a cancel sent to it survives."""
    grid = GridConfig(name="a", datasets=("digits",), backbones=("test_efficientnet",), strategies=("frozen",),
                      base=RunConfig(data=BASE.data, model=BASE.model,
                                     train=TrainConfig(epochs=400, patience=400, threads=1)))
    gdir = GridDir(orch.prepare(grid, tmp_path))
    rd = gdir.run("digits__test_efficientnet__frozen")
    argv, env = worker_command(rd.path, None, 1)
    worker = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: load_run(rd).summary.epoch >= 1)
        rd.request_cancel("stop the adopted one")
        launcher = CountingLauncher()
        counts = orch.Orchestrator(gdir.path, launcher=launcher).run()
        assert launcher.launched == []  # adopted, never launched again
        assert counts == {"cancelled": 1}
        assert load_run(rd).summary.error == "stop the adopted one"
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()


STUBBORN = """
import sys, time
from engine.store import RunDir
lock = RunDir(sys.argv[1]).lock()
assert lock.acquire()
print('{"type":"log","v":1,"ts":1,"message":"ignoring cancel"}', flush=True)
while True:
    time.sleep(0.1)
"""


class StubbornLauncher:
    """Starts a 'worker' that holds run.lock and ignores its cancel file."""

    local = True

    def capacity(self, request):
        return 1

    def launch(self, run_dir, request, on_line):
        import threading

        from engine.launcher import _pump

        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-c", STUBBORN, str(run_dir)], env=env, stdout=subprocess.PIPE)
        threading.Thread(target=_pump, args=(proc, on_line), daemon=True).start()
        return proc


def test_worker_ignoring_its_cancel_is_killed_and_marked_cancelled(tmp_path, monkeypatch):
    monkeypatch.setattr(orch, "KILL_AFTER", 1.0)
    grid = GridConfig(name="s", datasets=("digits",), backbones=("test_efficientnet",), strategies=("frozen",),
                      base=BASE)
    gdir = GridDir(orch.prepare(grid, tmp_path))
    rd = gdir.run("digits__test_efficientnet__frozen")

    def on_event(run_id, event):
        if isinstance(event, ev.Log):
            rd.request_cancel("please stop")

    t0 = time.monotonic()
    counts = orch.Orchestrator(gdir.path, launcher=StubbornLauncher(), on_event=on_event).run()
    assert counts == {"cancelled": 1}
    assert time.monotonic() - t0 < 20
    summary = load_run(rd).summary
    assert summary.status == "cancelled" and "ignoring its cancel request" in summary.error
    assert not rd.alive()


def test_a_pinned_gpu_is_cuda0_inside_the_worker():
    argv, env = worker_command(Path("/store/g/r"), 3, 2)
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert argv[-2:] == ["--device", "cuda:0"] and argv[2:4] == ["engine.worker", "/store/g/r"]
    assert env["OMP_NUM_THREADS"] == "2"
    argv, env = worker_command(Path("/store/g/r"), None, 0)
    assert "--device" not in argv and "CUDA_VISIBLE_DEVICES" not in env or env.get("CUDA_VISIBLE_DEVICES") == \
        os.environ.get("CUDA_VISIBLE_DEVICES")

    import torch

    from engine.config import ConfigError
    from engine.device import device_label, resolve_device

    assert device_label(torch.device("cuda:0"), "3") == "cuda:3"
    assert device_label(torch.device("cuda:1"), "2,5") == "cuda:5"
    assert device_label(torch.device("cpu"), "3") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("gpu7")


def test_unexpected_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from finetune_tui import cli as cli_module

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = cli("run", *FAST, "--strategies", "frozen", "--runs", str(blocker / "store"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("finetune-tui: error: can't access") and "a_file" in r.stderr

    def bug(args):
        raise RuntimeError("something internal broke")

    monkeypatch.setattr(cli_module, "cmd_runs", bug)
    code = cli_module.main(["runs", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "internal error: RuntimeError: something internal broke" in err
    crash_file = Path(err.split("traceback in ")[1].split(";")[0])
    assert "RuntimeError: something internal broke" in crash_file.read_text()
    crash_file.unlink()


def test_a_grid_started_from_a_folder_with_its_own_engine_package_runs(tmp_path, stop_grids):
    # the detached orchestrator (python -m engine.orchestrator) imported the user's engine/ from the folder the
    # command ran in, died at once, and its runs stayed "queued" without a word
    script = Path(sys.executable).parent / "finetune-tui"  # the console script, as a user runs it
    if not script.is_file():
        pytest.skip("finetune-tui is not installed next to this Python")
    project = tmp_path / "my_project"
    for package in ("engine", "tui", "export"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"raise ImportError('the project own {package}')\n")
    root = str(tmp_path / "runs")
    r = subprocess.run([str(script), "run", *FAST, "--strategies", "frozen", "--epochs", "1", "--name", "mine",
                        "--runs", root, "--detach"], capture_output=True, text=True, timeout=180, cwd=project,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr
    gdir = GridDir(Path(root) / "mine")
    assert wait_for(lambda: not gdir.running(), timeout=180)
    assert statuses(root, "mine") == {"digits__test_efficientnet__frozen": "done"}
    assert "ImportError" not in gdir.orchestrator_log.read_text()
