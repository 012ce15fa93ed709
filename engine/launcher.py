"""How a run is launched: the one seam a Ray (or SLURM) backend replaces.

A launcher starts ``engine.worker`` for a run folder on a device and hands back
a handle the orchestrator can poll and stop. Events come back line by line
through ``on_line``; the run folder is the durable record either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Protocol


class RunHandle(Protocol):
    pid: int

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


class Launcher(Protocol):
    def launch(self, run_dir: Path, gpu: int | None, threads: int, on_line: Callable[[str], None]) -> RunHandle: ...


class SubprocessLauncher:
    """One Python subprocess per run on this machine."""

    def launch(self, run_dir: Path, gpu: int | None, threads: int, on_line: Callable[[str], None]) -> subprocess.Popen:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        # the project root on the path, so an un-installed checkout works too
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        if threads:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        log = open(run_dir / "worker.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.worker", str(run_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env,
        )
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
