"""Workers forked from a warm process: still one process per run, without paying its imports every time.

Before it does anything a worker spends seconds importing torch, timm and
scikit-learn (about 5 s of CPU per run on a 2-core machine). ``WarmLauncher``
starts one fork server (multiprocessing's ``forkserver``: a single-threaded
process that imported them once, ``engine.warm_preload``) the first time it
launches a run, and forks every worker from it. Each run is still its own
process, with its own memory, run lock, exit code and signals; only the import
work is shared. The fork server never runs a torch operation or touches CUDA,
so its children start from a clean state: a child sets its environment (the
pinned GPU, its thread count) before any torch call, sends stdout to nowhere
and stderr to worker.log like the subprocess launcher does, and its events
reach the orchestrator by tailing events.jsonl (the durable record) instead of
a pipe. ``poll`` reports the exit code only after the last event was handed on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from engine.launcher import EventTail, Launcher, Resources, SubprocessLauncher, local_capacity, worker_command
from engine.store import RunDir
from engine.store.heartbeat import local_host

PRELOAD = ["engine.warm_preload"]
_CHILD_ENV = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONUNBUFFERED", "PYTHONPATH",
              "FINETUNE_TUI_CPU_CLAIM")  # engine.cpu_claims.CLAIM_ENV

_context = None
_context_lock = threading.Lock()


def context():
    """The forkserver context (one fork server per launching process, started on first use)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def prepare_child(run_dir: str, env: dict[str, str], threads: int) -> None:
    """A forked worker's environment and file descriptors, before any torch call."""
    for key in _CHILD_ENV:  # exactly what the subprocess launcher would have given it
        if key in env:
            os.environ[key] = env[key]
        else:
            os.environ.pop(key, None)
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(RunDir(run_dir).worker_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # events go to events.jsonl, which the launcher tails
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    if threads:
        import torch

        torch.set_num_threads(threads)  # OMP_NUM_THREADS was read when the fork server loaded OpenMP


def _child(run_dir: str, argv: list[str], env: dict[str, str], threads: int) -> None:
    prepare_child(run_dir, env, threads)
    from engine.worker import main

    sys.exit(main(argv))


class WarmHandle:
    """A forked worker as the orchestrator sees it (``RunHandle``): id, host, pid, poll, terminate, kill."""

    def __init__(self, process, run_dir: Path, on_line: Callable[[str], None]):
        self.process = process
        self.pid = process.pid
        self.id = f"pid {process.pid}"
        self.host = local_host()
        self._tail = EventTail(run_dir, on_line, lambda: process.exitcode, name=f"tail-{self.pid}")

    def poll(self) -> int | None:
        return self._tail.code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self._tail.code is not None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:  # ended a moment ago; the tail reports it
            pass


class WarmLauncher:
    """``engine.launcher.Launcher`` forking workers from the warm fork server."""

    local = True

    def capacity(self, request: Resources) -> int:
        return local_capacity(request)

    def launch(self, run_dir: Path, request: Resources, on_line: Callable[[str], None]) -> WarmHandle:
        threads = request.threads
        argv, env = worker_command(run_dir, request.gpu_index, threads, request.claim)
        worker_args = argv[argv.index("engine.worker") + 1:]  # RUN_DIR [--device cuda:0]
        process = context().Process(target=_child, args=(str(run_dir), worker_args, env, threads),
                                    name=f"worker {Path(run_dir).name}")
        process.start()
        return WarmHandle(process, Path(run_dir), on_line)


def default_launcher() -> Launcher:
    """The warm launcher where the platform forks (Linux, macOS); a plain subprocess per run elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        return WarmLauncher()
    return SubprocessLauncher()
