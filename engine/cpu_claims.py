"""The CPU threads that finetune-tui runs on this host use, of any grid and any run store.

An orchestrator claims each CPU run's threads before it launches the run (a small file it holds a flock
on, holding the number) and gives the claim back when the run ends, so a grid that shares the cores
(``train.threads = 0``) sees the other grids' runs too: two grids started side by side on a 2-core machine
gave each run 2 OpenMP threads, 4 on 2 cores, and oversubscribed threads wait on each other at every
operation. A claim nobody holds belongs to an orchestrator that is gone and is removed by whoever finds it.
The orchestrator rebalances its runs' claims as other grids' runs come and go, and each worker follows
its claim's number between batches (``Follower``; ``torch.set_num_threads`` acts on the calling thread, so
the training loop itself calls it). Claims are advice: a run whose claim can't be written still trains.
Not engine.store's ``FileLock``: a claim is locked under a temporary name and renamed into place, so a
counter never finds one not yet locked and removes it as stale.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import tempfile
import time
from pathlib import Path

ENV = "FINETUNE_TUI_HOST_DIR"  # where the folder is (tests point it at their own)
CLAIM_ENV = "FINETUNE_TUI_CPU_CLAIM"  # a worker's own claim file, which it follows
WIDTH = 8  # the number, space-padded: rewritten in place, a reader never sees half of two numbers
_numbers = itertools.count()


def registry() -> Path:
    base = os.environ.get(ENV) or os.path.join(tempfile.gettempdir(), f"finetune-tui-{os.getuid()}")
    return Path(base) / "threads"


class Claim:
    """``threads`` CPU threads of one run, claimed by this process from ``start()`` to ``stop()``."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.fd: int | None = None
        self.path: Path | None = None

    def start(self) -> "Claim":
        folder = registry()
        name = f"{os.getpid()}-{next(_numbers)}"
        tmp = folder / f".{name}.new"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError:
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.pwrite(fd, _number(self.threads), 0)
            self.path = folder / f"{name}.claim"
            os.replace(tmp, self.path)  # held before anyone can see it, so never taken for a stale one
            self.fd = fd
        except OSError:
            os.close(fd)
            self.path = None
        return self

    def update(self, threads: int) -> None:
        """A new number of threads for the run, which its worker takes up at its next check."""
        self.threads = threads
        if self.fd is not None:
            try:
                os.pwrite(self.fd, _number(threads), 0)
            except OSError:
                pass

    def stop(self) -> None:
        if self.fd is None or self.path is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _number(threads: int) -> bytes:
    return str(threads).rjust(WIDTH).encode()


def _read(fd: int) -> int | None:
    text = os.pread(fd, WIDTH, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _read_file(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def claimed(exclude_pid: int | None = None) -> tuple[int, int]:
    """(runs, threads) of the live claims on this host, leaving out those of process ``exclude_pid``."""
    runs = threads = 0
    try:
        paths = list(registry().glob("*.claim"))
    except OSError:
        return 0, 0
    for path in paths:
        try:
            if exclude_pid is not None and int(path.stem.split("-")[0]) == exclude_pid:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (ValueError, OSError):
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a live run's
            runs += 1
            threads += _read(fd) or 1
        else:  # nobody holds it: its orchestrator is gone (the same file, not one just put there)
            try:
                if os.fstat(fd).st_ino == path.stat().st_ino:
                    path.unlink()
            except OSError:
                pass
        finally:
            os.close(fd)
    return runs, threads


def cpu_threads(cores: int, concurrency: int, own: list[int], other_runs: int, other_threads: int) -> int:
    """OpenMP threads for a run a CPU grid starts now, beside its own running runs' threads ``own``:
    the cores shared among its slots and the other grids' runs, and no more than the cores nobody uses."""
    fair = cores // (max(concurrency, len(own) + 1) + other_runs)
    free = cores - sum(own) - other_threads if other_runs else cores
    return max(1, min(fair, free))


class Follower:
    """In a worker: the thread count of its claim, checked at most every ``every`` seconds."""

    def __init__(self, path: str, threads: int, every: float = 2.0) -> None:
        self.path, self.threads, self.every = path, threads, every
        self.next_check = time.monotonic() + every

    @classmethod
    def from_env(cls) -> "Follower | None":
        """The worker's own claim (``CLAIM_ENV``), at the count it was started with; None without one."""
        path = os.environ.get(CLAIM_ENV, "")
        threads = _read_file(path) if path else None
        return cls(path, threads) if threads else None

    def check(self) -> int | None:
        """The new count when the claim's changed (the caller sets it), else None."""
        now = time.monotonic()
        if now < self.next_check:
            return None
        self.next_check = now + self.every
        wanted = _read_file(self.path)  # None: the orchestrator is gone; keep what it has
        if wanted is None or wanted == self.threads:
            return None
        self.threads = wanted
        return wanted
