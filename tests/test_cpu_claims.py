"""CPU threads claimed on the host (engine.cpu_claims): counted across grids, so grids sharing the cores
don't oversubscribe them; a claim whose holder is gone stops counting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import events as ev
from engine import orchestrator as orch
from engine.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from engine.cpu_claims import ENV, claimed, cpu_threads, registry
from engine.launcher import SubprocessLauncher
from engine.store import GridDir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def own_host_folder(tmp_path, monkeypatch):
    """Claims of this test only (the subprocesses inherit it)."""
    monkeypatch.setenv(ENV, str(tmp_path / "host"))


def other_grid(threads: int) -> subprocess.Popen:
    """A process holding one run's claim of ``threads`` threads, as another grid's orchestrator would."""
    code = (f"from engine.cpu_claims import Claim\nc = Claim({threads}).start()\nprint('ready', flush=True)\n"
            "import time; time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_claim_counts_while_its_holder_lives_and_goes_with_it():
    assert claimed() == (0, 0)
    proc = other_grid(3)
    try:
        assert claimed() == (1, 3)
        assert claimed(exclude_pid=proc.pid) == (0, 0)
    finally:
        proc.kill()
        proc.wait()
    assert [p.name for p in registry().glob("*.claim")] == [f"{proc.pid}-0.claim"]  # SIGKILL: nobody removed it
    assert claimed() == (0, 0)
    assert not list(registry().glob("*.claim"))  # whoever counted cleared it


def test_threads_share_the_cores_among_slots_and_other_grids_runs_within_the_free_cores():
    assert cpu_threads(2, 1, [], 0, 0) == 2  # one grid alone, a run at a time: both cores (as before)
    assert cpu_threads(16, 2, [8], 0, 0) == 8  # its own second slot was always counted
    assert cpu_threads(2, 1, [], 1, 2) == 1  # another grid's run holds both cores: one thread, not two
    assert cpu_threads(16, 2, [], 2, 16) == 1  # fair share 4, but nothing is free until theirs end
    assert cpu_threads(16, 2, [4], 2, 8) == 4  # fair share 16 // 4
    assert cpu_threads(16, 1, [], 1, 4) == 8
    assert cpu_threads(4, 1, [], 7, 7) == 1  # never none


class RecordingLauncher(SubprocessLauncher):
    def __init__(self):
        self.threads, self.claims = [], []

    def launch(self, run_dir, request, on_line):
        self.threads.append(request.threads)
        self.claims.append(claimed())  # this process's own claim is made before the launch
        return super().launch(run_dir, request, on_line)


def _grid(name):
    return GridConfig(name=name, datasets=("digits",), backbones=("test_efficientnet",), strategies=("frozen",),
                      base=RunConfig(data=DataConfig(dataset="digits", image_size=32, train_limit=200),
                                     model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
                                     train=TrainConfig(epochs=1, threads=0)))


def test_a_cpu_grid_starts_its_run_on_the_cores_another_grid_leaves_then_on_all_of_them(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    proc = other_grid(3)
    try:
        beside = RecordingLauncher()
        gdir = GridDir(orch.prepare(_grid("beside"), tmp_path))
        assert orch.Orchestrator(gdir.path, launcher=beside, concurrency=1).run() == {"done": 1}
    finally:
        proc.kill()
        proc.wait()
    assert beside.threads == [1]  # 4 cores, 3 of them another grid's: 1, not 4
    assert beside.claims == [(2, 4)]  # the other grid's 3 and its own 1
    logs = [e.message for e in gdir.run("digits__test_efficientnet__frozen").events()[0] if isinstance(e, ev.Log)]
    assert ("1 run(s) of other grids on this host use 3 CPU thread(s): this one gets 1 of 4 cores (train.threads "
            "sets a number)") in logs

    alone = RecordingLauncher()
    gdir = GridDir(orch.prepare(_grid("alone"), tmp_path))
    assert orch.Orchestrator(gdir.path, launcher=alone, concurrency=1).run() == {"done": 1}
    assert alone.threads == [4] and alone.claims == [(1, 4)]  # the other grid is gone, and so is its claim
    assert claimed() == (0, 0)  # the finished run gave its claim back
    logs = [e.message for e in gdir.run("digits__test_efficientnet__frozen").events()[0] if isinstance(e, ev.Log)]
    assert not [m for m in logs if "other grids" in m]


def test_a_worker_follows_its_claim_between_checks(tmp_path):
    from engine.cpu_claims import Claim, Follower

    claim = Claim(2).start()
    try:
        follower = Follower(str(claim.path), 2, every=0.0)
        assert follower.check() is None  # unchanged
        claim.update(1)
        assert follower.check() == 1 and follower.threads == 1
        assert follower.check() is None
        claim.update(12)
        assert follower.check() == 12
        slow = Follower(str(claim.path), 12, every=60.0)
        claim.update(3)
        assert slow.check() is None  # not before its next check
    finally:
        claim.stop()
    assert Follower(str(claim.path), 3, every=0.0).check() is None  # the orchestrator gone: it keeps its count


def test_a_running_run_gives_cores_up_while_another_grid_runs_and_takes_them_back(tmp_path, monkeypatch):
    import threading
    import time

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    grid = _grid("long")
    grid = GridConfig(name="long", datasets=grid.datasets, backbones=grid.backbones, strategies=grid.strategies,
                      base=RunConfig(data=grid.base.data, model=grid.base.model,
                                     train=TrainConfig(epochs=2000, patience=2000, threads=0)))
    gdir = GridDir(orch.prepare(grid, tmp_path))
    rd = gdir.run("digits__test_efficientnet__frozen")
    launcher = RecordingLauncher()
    runner = threading.Thread(target=lambda: orch.Orchestrator(gdir.path, launcher=launcher, concurrency=1).run())
    runner.start()

    def logged(text, timeout=90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(isinstance(e, ev.Log) and e.message.startswith(text) for e in rd.events()[0]):
                return True
            time.sleep(0.2)
        return False

    proc = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not [e for e in rd.events()[0] if isinstance(e, ev.Epoch)]:
            time.sleep(0.2)
        assert launcher.threads == [4]
        proc = other_grid(3)
        assert logged("1 CPU thread(s) from here on: other grids' runs on this host started or ended")
        proc.kill()
        proc.wait()
        assert logged("4 CPU thread(s) from here on")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        gdir.request_cancel("test over")
        runner.join(timeout=90)
    assert not runner.is_alive()
    assert claimed() == (0, 0)
