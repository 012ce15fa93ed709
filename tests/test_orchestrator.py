"""Grids through real worker subprocesses: failure isolation, SIGKILL, resume, fail-fast presets."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from engine import events as ev
from engine.config import ConfigError, DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from engine.orchestrator import GridBusy, Orchestrator, prepare
from engine.store import FileLock, RunStore, load_run

from .data_fixtures import write_cifar10

BASE = RunConfig(
    data=DataConfig(dataset="digits", image_size=32, batch_size=64),
    model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
    train=TrainConfig(epochs=2, threads=1),
)


def statuses(root, grid):
    return {r.run_id: r.summary.status for r in RunStore(root).runs(grid)}


def test_failing_run_is_isolated_and_others_finish(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"corrupt")
    grid = GridConfig(name="g", datasets=("digits",), backbones=("test_efficientnet",),
                      strategies=("frozen", "partial"), concurrency=2, base=BASE)
    gdir = prepare(grid, tmp_path)
    # corrupt one run's weights after preparing: its worker fails, the other must not care
    cfg = json.loads((gdir / "digits__test_efficientnet__frozen" / "config.json").read_text())
    cfg["model"]["weights"] = str(bad)
    (gdir / "digits__test_efficientnet__frozen" / "config.json").write_text(json.dumps(cfg))
    seen = []
    counts = Orchestrator(gdir, on_event=lambda rid, e: seen.append((rid, e.type))).run()
    assert counts == {"done": 1, "failed": 1}
    rec = load_run(gdir / "digits__test_efficientnet__frozen")
    assert rec.summary.error_kind == "user" and "bad.safetensors" in rec.summary.error
    assert ("digits__test_efficientnet__partial", "finished") in seen


def _wait_for(predicate, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _epochs(rdir):
    return [e for e in ev.read_events(rdir / "events.jsonl")[0] if e.type == "epoch"]


def test_sigkill_worker_then_rerun_resumes(tmp_path):
    grid = GridConfig(name="k", datasets=("digits",), backbones=("test_efficientnet",),
                      strategies=("full", "frozen"), base=replace(BASE, train=replace(BASE.train, epochs=4)))
    gdir = prepare(grid, tmp_path)
    victim = gdir / "digits__test_efficientnet__full"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    orch = subprocess.Popen([sys.executable, "-m", "engine.orchestrator", str(gdir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # kill the worker mid-epoch, after it has a checkpoint
        assert _wait_for(lambda: len(_epochs(victim)) >= 1)
        pid = json.loads((victim / "summary.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        assert orch.wait(timeout=300) == 0
    finally:
        if orch.poll() is None:
            orch.kill()
    st = statuses(tmp_path, "k")
    assert st == {"digits__test_efficientnet__full": "failed", "digits__test_efficientnet__frozen": "done"}
    s = load_run(victim).summary
    assert s.error_kind == "killed" and "SIGKILL" in s.error
    done_epochs = len(_epochs(victim))
    # the same grid again: the finished run is skipped, the killed one resumes from its checkpoint
    frozen_events = (gdir / "digits__test_efficientnet__frozen" / "events.jsonl").read_text()
    assert Orchestrator(gdir).run() == {"done": 2}
    assert (gdir / "digits__test_efficientnet__frozen" / "events.jsonl").read_text() == frozen_events
    started = [e for e in ev.read_events(victim / "events.jsonl")[0] if e.type == "started"]
    assert started[-1].resumed_from_epoch == done_epochs >= 1
    assert [e.epoch for e in _epochs(victim)][-1] == 4


def test_grid_lock_refuses_a_second_orchestrator(tmp_path):
    gdir = prepare(GridConfig(name="l", datasets=("digits",), backbones=("test_efficientnet",),
                              strategies=("frozen",), base=BASE), tmp_path)
    lock = FileLock(gdir / "grid.lock")
    assert lock.acquire()
    with pytest.raises(GridBusy, match="already running"):
        Orchestrator(gdir).run()
    lock.release()


def test_grid_cancel_marks_queued_runs_cancelled(tmp_path):
    from engine.store import GridDir

    # long enough that the first run can't finish before the cancel reaches it
    long = replace(BASE, train=replace(BASE.train, epochs=500, patience=500))
    gdir = prepare(GridConfig(name="c", datasets=("digits",), backbones=("test_efficientnet",),
                              strategies=("frozen", "partial", "full"), base=long), tmp_path)

    def on_event(rid, e):
        if e.type == "started":
            GridDir(gdir).request_cancel()

    counts = Orchestrator(gdir, on_event=on_event).run()
    assert counts == {"cancelled": 3}


def test_changed_config_under_same_name_is_refused(tmp_path):
    grid = GridConfig(name="same", datasets=("digits",), backbones=("test_efficientnet",), base=BASE)
    prepare(grid, tmp_path)
    with pytest.raises(ConfigError, match="another config"):
        prepare(replace(grid, strategies=("full",)), tmp_path)


def run_cli(*args, cwd=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def test_seed_preset_fails_fast_without_cifar(tmp_path):
    t0 = time.time()
    r = run_cli("run", "--preset", "seed", "--runs", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "transport" in r.stderr and "cifar-10-batches-py" in r.stderr
    assert not (tmp_path / "runs" / "seed").exists()  # nothing started
    assert time.time() - t0 < 60


def test_seed_preset_runs_on_real_format_cifar_files(tmp_path):
    # enough images per class for the transport recipe (2000 train / 500 test per class)
    write_cifar10(tmp_path / "data", train_per_class=2000, test_per_class=500)
    r = run_cli("run", "--preset", "seed", "--runs", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"),
                "--datasets", "transport", "--backbones", "test_efficientnet", "--strategies", "frozen",
                "--epochs", "1", "--weights", "random", "--set", "train.threads=1", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    rec = RunStore(tmp_path / "runs").runs("seed")[0]
    assert rec.summary.status == "done"
    res = json.loads((rec.path / "results.json").read_text())
    assert res["classes"] == ["airplane", "automobile", "ship", "truck"] and res["n_test"] == 2000
    assert "done: test acc" in r.stdout


def test_cli_user_errors_are_one_line(tmp_path):
    r = run_cli("run", "--backbones", "resnet5", "--runs", str(tmp_path))
    assert r.returncode == 2 and "did you mean" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", "--grid", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml not found" in r.stderr
    r = run_cli("run", "--set", "train.epochs=lots")
    assert r.returncode == 2 and "epochs: expected an integer" in r.stderr
    r = run_cli("runs", "--runs", str(tmp_path), "--grid", "nope")
    assert r.returncode == 2 and "no grid 'nope'" in r.stderr


class _ClusterLauncher:
    """A cluster launcher's interface, recording what the orchestrator asks of it (no cluster)."""

    local = False

    def __init__(self):
        self.adopted: list[str] = []
        self.launched: list[str] = []

    def capacity(self, request):
        return 1

    def adopt(self, run_dir, on_line):
        self.adopted.append(os.path.basename(run_dir))
        return None

    def launch(self, run_dir, request, on_line):
        self.launched.append(os.path.basename(run_dir))
        return type("Handle", (), {"pid": 0, "id": "actor fake", "host": "", "lost_node": ""})()


def test_a_run_requeued_after_its_node_was_lost_starts_a_new_actor_rather_than_adopting(tmp_path):
    # the cluster may still list a dead actor under the run's name for a moment: adopting it would lose the
    # run a second time and use up its retry (seen as a flaky lost-node test)
    grid = GridConfig(name="n", datasets=("digits",), backbones=("test_efficientnet",), strategies=("frozen",),
                      base=replace(BASE, train=replace(BASE.train, device="cpu")))
    gdir = prepare(grid, tmp_path)
    cluster = _ClusterLauncher()
    orch = Orchestrator(gdir, launcher=cluster)
    (rd,) = orch.pending()
    slot = orch._start(rd, [])
    assert (cluster.adopted, cluster.launched) == ([rd.run_id], [rd.run_id])  # first start: adopt if alive
    assert orch._lost(slot, "node-a") and orch.requeued == [rd]
    assert load_run(rd).summary.error == "node lost: node-a"
    orch._start(rd, [])
    assert (cluster.adopted, cluster.launched) == ([rd.run_id], [rd.run_id] * 2)  # retried: a new actor
    orch._start(rd, [])  # any later start (e.g. an orchestrator restarted) may adopt again
    assert cluster.adopted == [rd.run_id] * 2
