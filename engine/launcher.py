"""How a run is launched: the interface every executor implements, and one worker subprocess per run here.

A launcher starts ``engine.worker`` for a run folder and hands back a handle
(``RunHandle``: an id, the host it runs on, poll, terminate, kill) the
orchestrator can poll and stop. It is asked for ``Resources`` (CPU threads, a
GPU or none), not for a device of this machine: a local launcher pins the GPU
the orchestrator picked from this machine's (``gpu_index``), a cluster picks
its own. ``capacity`` says how many such runs fit at once. Events come back by
tailing the run's events.jsonl (``EventTail``): the run folder is the durable
record and the one channel, whichever host the worker runs on. A run pinned
to a GPU sees only that GPU (``CUDA_VISIBLE_DEVICES``), so inside the worker
it is ``cuda:0`` whatever its index on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from engine.cpu_claims import CLAIM_ENV
from engine.store import RunDir
from engine.store.heartbeat import local_host

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
TAIL_EVERY = 0.1  # seconds between reads of a live run's events.jsonl


@dataclass(frozen=True)
class Resources:
    """What one run asks for."""

    threads: int = 0  # CPU threads of the run (0 = the worker's default)
    gpus: int = 0  # GPUs it needs: 0 or 1
    gpu_pool: tuple[int, ...] = ()  # this machine's GPUs the grid may spread over (a local launcher's capacity)
    gpu_index: int | None = None  # the one of them this run is pinned to (local launchers only)
    claim: str = ""  # the file of its CPU threads claim, which the worker follows (engine.cpu_claims; local only)

    @property
    def cpus(self) -> int:
        return max(1, self.threads)


class RunHandle(Protocol):
    id: str  # the launcher's name for the run's process: "pid 1234", a Ray actor id
    host: str  # where it runs ("" while a cluster has not placed it yet)
    pid: int  # 0 when the process is not on this machine

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


class Launcher(Protocol):
    local: bool  # runs on this machine: pids, memory samples and flocks mean something here

    def capacity(self, request: Resources) -> int: ...
    def launch(self, run_dir: Path, request: Resources, on_line: Callable[[str], None]) -> RunHandle: ...


def local_capacity(request: Resources) -> int:
    """Runs at once on this machine: one per GPU of the pool, one on the CPU."""
    return max(1, len(request.gpu_pool)) if request.gpus else 1


def project_env(env: dict | None = None) -> dict:
    """The environment with this checkout first on PYTHONPATH, so an un-installed checkout works too.

    PYTHONSAFEPATH: ``python -m engine.worker`` (and the orchestrator, a study, the TUI's commands) would
    otherwise put the current folder first on sys.path, and a user's own ``engine/`` or ``tui/`` package
    there would be imported instead of ours: a detached grid then died at its first import, never started.
    """
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = PROJECT_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONSAFEPATH"] = "1"
    return env


def worker_command(run_dir: Path, gpu: int | None, threads: int, claim: str = "") -> tuple[list[str], dict]:
    """(argv, env) of the worker process for a run."""
    env = project_env()
    env["PYTHONUNBUFFERED"] = "1"
    env.pop(CLAIM_ENV, None)  # never an orchestrator's own (a grid started from inside a worker)
    if claim:
        env[CLAIM_ENV] = claim
    argv = [sys.executable, "-m", "engine.worker", str(run_dir)]
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        argv += ["--device", "cuda:0"]  # the one GPU this process can see
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return argv, env


class EventTail:
    """Hands each complete new line of a run's events.jsonl to ``on_line``, from where the file ended when
    the run was launched, until ``exitcode()`` says the worker ended (the last lines delivered first)."""

    def __init__(self, run_dir: Path, on_line: Callable[[str], None], exitcode: Callable[[], int | None],
                 name: str = "tail"):
        self._events = RunDir(run_dir).events_file
        self._offset = self._events.stat().st_size if self._events.exists() else 0
        self._on_line = on_line
        self._exitcode = exitcode
        self.code: int | None = None
        self._thread = threading.Thread(target=self._tail, name=name, daemon=True)
        self._thread.start()

    def _deliver(self) -> None:
        try:
            with open(self._events, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for raw in data[: end + 1].splitlines():
            try:
                self._on_line(raw.decode("utf-8", errors="replace"))
            except Exception:  # a display bug must never stop the tail
                pass

    def _tail(self) -> None:
        while True:
            code = self._exitcode()  # only this thread asks the process: a sentinel may be read once
            self._deliver()
            if code is not None:
                self.code = code
                return
            time.sleep(TAIL_EVERY)


class ProcessHandle:
    """A worker subprocess of this machine (``RunHandle``), its events tailed from the store."""

    def __init__(self, proc: subprocess.Popen, run_dir: Path, on_line: Callable[[str], None]):
        self.process = proc
        self.pid = proc.pid
        self.id = f"pid {proc.pid}"
        self.host = local_host()
        self._tail = EventTail(run_dir, on_line, proc.poll, name=f"tail-{proc.pid}")

    def poll(self) -> int | None:
        return self._tail.code

    def terminate(self) -> None:
        if self._tail.code is None:
            self.process.terminate()

    def kill(self) -> None:
        if self._tail.code is None:
            self.process.kill()


class SubprocessLauncher:
    """One Python subprocess per run on this machine."""

    local = True

    def capacity(self, request: Resources) -> int:
        return local_capacity(request)

    def launch(self, run_dir: Path, request: Resources, on_line: Callable[[str], None]) -> ProcessHandle:
        argv, env = worker_command(run_dir, request.gpu_index, request.threads, request.claim)
        log = open(RunDir(run_dir).worker_log, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        log.close()
        return ProcessHandle(proc, Path(run_dir), on_line)


def _pump(proc: subprocess.Popen, on_line: Callable[[str], None]) -> None:
    """Hand a process's stdout to ``on_line`` line by line (for launchers whose workers print their events)."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        try:
            on_line(raw.decode("utf-8", errors="replace"))
        except Exception:  # a display bug must never stall the worker's pipe
            pass
    proc.stdout.close()
