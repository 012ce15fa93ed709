"""Workers forked from the warm fork server: one process per run, events delivered, exit codes and signals as
with subprocesses, the pinned environment applied, start-up without the imports."""

from __future__ import annotations

import json
import os
import signal
import time

from engine.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from engine.launcher import Resources
from engine.orchestrator import Orchestrator, prepare
from engine.store import RunDir, load_run
from engine.warm_launcher import WarmLauncher

BASE = RunConfig(
    data=DataConfig(dataset="digits", image_size=32, batch_size=64),
    model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
    train=TrainConfig(epochs=2, threads=1),
)


def test_a_grid_runs_on_forked_workers(tmp_path):
    grid = GridConfig(name="w", datasets=("digits",), backbones=("test_efficientnet",),
                      strategies=("frozen", "partial"), concurrency=2, base=BASE)
    gdir = prepare(grid, tmp_path)
    seen: list[tuple[str, str]] = []
    counts = Orchestrator(gdir, launcher=WarmLauncher(), on_event=lambda rid, e: seen.append((rid, e.type))).run()
    assert counts == {"done": 2}
    for rid in ("digits__test_efficientnet__frozen", "digits__test_efficientnet__partial"):
        kinds = [k for r, k in seen if r == rid]
        assert kinds[0] in ("progress", "started") and kinds[-1] == "finished" and kinds.count("epoch") == 2
        rd = RunDir(gdir / rid)
        results = json.loads(rd.results_file.read_text())
        # forked warm: the process's start-up is the fork, not the imports (a cold worker: seconds)
        assert results["phases"]["startup"] < 1.0
        # its own CPU from the fork on: the training, not the fork server's imports (seconds of CPU)
        assert 0 < results["cpu"]["user_seconds"] + results["cpu"]["system_seconds"] < results["total_seconds"] * 2 + 1
        assert "INFO" in rd.worker_log.read_text()  # stderr went to worker.log
    pids = {load_run(gdir / rid).summary.pid for rid, _ in seen}
    assert len(pids) == 2 and os.getpid() not in pids  # a process per run


def test_exit_codes_and_signals_are_the_workers(tmp_path):
    slow = RunConfig(data=BASE.data, model=BASE.model, train=TrainConfig(epochs=200, threads=1, patience=500))
    gdir = prepare(GridConfig(name="s", datasets=("digits",), backbones=("test_efficientnet",),
                              strategies=("full",), base=slow), tmp_path)
    rd = RunDir(gdir / "digits__test_efficientnet__full")
    lines: list[str] = []
    handle = WarmLauncher().launch(rd.path, Resources(threads=1), lines.append)
    deadline = time.time() + 120
    while time.time() < deadline and not any('"type":"epoch"' in line for line in lines):
        time.sleep(0.1)
    assert any('"type":"epoch"' in line for line in lines), "no epoch reached the launcher"
    assert handle.poll() is None
    handle.terminate()  # SIGTERM: the worker ends cancelled, exit 0
    deadline = time.time() + 60
    while time.time() < deadline and handle.poll() is None:
        time.sleep(0.1)
    assert handle.poll() == 0
    assert '"type":"cancelled"' in lines[-1]  # the last event was delivered before the exit code
    assert load_run(rd).summary.status == "cancelled"
    handle2 = WarmLauncher().launch(rd.path, Resources(threads=1), lambda line: None)  # resumes; then a hard kill
    time.sleep(0.5)
    handle2.kill()
    deadline = time.time() + 30
    while time.time() < deadline and handle2.poll() is None:
        time.sleep(0.1)
    assert handle2.poll() == -signal.SIGKILL


def _probe(run_dir: str, env: dict, threads: int, out: str) -> None:
    """Runs in a forked child: what a worker would see after the launcher prepared it."""
    import sys

    import torch

    from engine.warm_launcher import prepare_child

    prepare_child(run_dir, env, threads)
    print("to worker.log", file=sys.stderr, flush=True)
    with open(out, "w") as fh:
        json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "omp": os.environ.get("OMP_NUM_THREADS"),
                   "threads": torch.get_num_threads(), "cuda_initialised": torch.cuda.is_initialized()}, fh)


def test_the_child_gets_the_run_environment(tmp_path, monkeypatch):
    from engine import warm_launcher

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # the launcher's own: must not leak into a CPU run's child
    rd = tmp_path / "run"
    rd.mkdir()
    out = tmp_path / "env.json"
    p = warm_launcher.context().Process(target=_probe, args=(str(rd), {"OMP_NUM_THREADS": "1"}, 1, str(out)))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    seen = json.loads(out.read_text())
    assert seen == {"cuda": None, "omp": "1", "threads": 1, "cuda_initialised": False}
    assert "to worker.log" in (rd / "worker.log").read_text()
    out.unlink()
    p = warm_launcher.context().Process(target=_probe, args=(str(rd), {"CUDA_VISIBLE_DEVICES": "3",
                                                                      "OMP_NUM_THREADS": "2"}, 2, str(out)))
    p.start()
    p.join(120)
    assert json.loads(out.read_text())["cuda"] == "3" and json.loads(out.read_text())["threads"] == 2


def test_the_fork_server_freezes_what_it_imported():
    # a worker's collections then leave the shared pages alone (no copy-on-write of the imports)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import gc, engine.warm_preload; print(gc.get_freeze_count())"],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert int(out.stdout) > 100_000  # torch, timm and scikit-learn's objects
