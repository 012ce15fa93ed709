"""How a run is launched on this machine: one worker subprocess per run.

A launcher starts ``engine.worker`` for a run folder and hands back a handle
the orchestrator can poll and stop. Events come back line by line through
``on_line``; the run folder is the durable record either way. A run pinned to
a GPU sees only that GPU (``CUDA_VISIBLE_DEVICES``), so inside the worker it
is ``cuda:0`` whatever its index on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Protocol

from engine.store import RunDir

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


class RunHandle(Protocol):
    pid: int

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


class Launcher(Protocol):
    def launch(self, run_dir: Path, gpu: int | None, threads: int, on_line: Callable[[str], None]) -> RunHandle: ...


def project_env(env: dict | None = None) -> dict:
    """The environment with this checkout first on PYTHONPATH, so an un-installed checkout works too."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = PROJECT_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def worker_command(run_dir: Path, gpu: int | None, threads: int) -> tuple[list[str], dict]:
    """(argv, env) of the worker process for a run."""
    env = project_env()
    env["PYTHONUNBUFFERED"] = "1"
    argv = [sys.executable, "-m", "engine.worker", str(run_dir)]
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        argv += ["--device", "cuda:0"]  # the one GPU this process can see
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return argv, env


class SubprocessLauncher:
    """One Python subprocess per run on this machine."""

    def launch(self, run_dir: Path, gpu: int | None, threads: int, on_line: Callable[[str], None]) -> subprocess.Popen:
        argv, env = worker_command(run_dir, gpu, threads)
        log = open(RunDir(run_dir).worker_log, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env)
        log.close()
        threading.Thread(target=_pump, args=(proc, on_line), daemon=True).start()
        return proc


def _pump(proc: subprocess.Popen, on_line: Callable[[str], None]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        try:
            on_line(raw.decode("utf-8", errors="replace"))
        except Exception:  # a display bug must never stall the worker's pipe
            pass
    proc.stdout.close()
