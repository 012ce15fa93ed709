"""Shared pieces of the fault suite (tests/test_faults_*.py): the CLI as a user runs it, tiny real grids,
one-line error checks, and the machine's own limits (a small tmpfs, a memory cgroup) where root may make them."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
# the smallest real grid: scikit-learn's digits, timm's tiny random test_efficientnet, 32 px, one thread
TINY = ["--datasets", "digits", "--backbones", "test_efficientnet", "--head", "linear", "--weights", "random",
        "--image-size", "32", "--set", "train.threads=1", "--plain"]


def cli_env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **extra)


def cli(*args, timeout=240, cwd=None, **popen):
    """``finetune-tui ARGS`` as a user runs it: a new process, output captured."""
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), cwd=cwd or ROOT, **popen)


def cli_background(*args, cwd=None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "finetune_tui.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=cwd or ROOT, **popen)


def one_line(err: str) -> str:
    """The only line of ``err``: "finetune-tui: error: ...", no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("finetune-tui: error: "), err
    return lines[0]


def wait_for(predicate, timeout: float = 120.0, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def rows(root: Path | str, grid: str | None = None) -> dict[str, dict]:
    """``finetune-tui runs --format json``, by run id (checked to be a clean exit)."""
    args = ["runs", "--runs", str(root), "--format", "json"] + (["--grid", grid] if grid else [])
    done = cli(*args)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return {row["run_id"]: row for row in json.loads(done.stdout)}


def results_of(root: Path | str) -> dict[str, bytes]:
    """Every finished run's results.json and best checkpoint, byte for byte (to show nothing was lost)."""
    out = {}
    for rec in RunStore(root).runs():
        for f in (rec.dir.results_file, rec.dir.best):
            if f.exists():
                out[f"{rec.summary.grid}/{rec.run_id}/{f.name}"] = f.read_bytes()
    return out


def stop_all(root: Path) -> None:
    """Cancel whatever a test left running in ``root`` and wait for it to end (SIGTERM where a cancel can't be
    written, e.g. on a full disk)."""
    from engine.errors import StoreError

    store = RunStore(root)
    for name in store.grids():
        gdir = store.grid(name)
        if not gdir.running():
            continue
        try:
            gdir.request_cancel("test over")
        except StoreError:
            try:
                os.kill(int(gdir.lock_file.read_text().strip()), 15)
            except (OSError, ValueError):
                pass
        wait_for(lambda: not gdir.running(), timeout=60)


@contextlib.contextmanager
def paused(pid: int):
    """The process stopped (SIGSTOP) for the block, continued after: what a test does to it meanwhile (a full
    disk, a signal left pending) lands mid-run however fast the machine trains."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# --- a small filesystem ---------------------------------------------------------------------------


def mount_tmpfs(where: Path, size_mb: int) -> Path:
    """A tmpfs of ``size_mb`` at ``where`` (skips the test where mounting isn't permitted)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"can't run mount here: {exc}")
    if done.returncode:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip() or done.returncode}")
    return where


def unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(fs: Path, leave: int = 0) -> Path:
    """A file taking all but ``leave`` bytes of the filesystem."""
    dummy = fs / "dummy"
    # unbuffered: a write the filesystem refuses must not sit in a buffer that close() would retry (ENOSPC)
    with open(dummy, "wb", buffering=0) as fh:
        todo = shutil.disk_usage(fs).free - leave
        try:
            while todo > 0:
                fh.write(b"\0" * min(todo, MB))
                todo -= MB
            fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return dummy


def import_footprint() -> tuple[int, int]:
    """(address space, peak resident memory) in bytes of a worker once torch, timm and the trainer are in."""
    code = ("import re, torch, timm, engine.trainer, engine.data\n"
            "s = open('/proc/self/status').read()\n"
            "print(*(int(re.search(k + r':\\s+(\\d+) kB', s).group(1)) * 1024 for k in ('VmSize', 'VmHWM')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    size, peak = map(int, done.stdout.split())
    return size, peak


# --- a memory cgroup --------------------------------------------------------------------------------


class MemoryCgroup:
    """A child memory cgroup with a limit, for a process tree to start in (v1 or v2; skips where not allowed)."""

    def __init__(self, limit: int):
        from engine.failures import memory_cgroups

        own = memory_cgroups(os.getpid())
        if not own:
            pytest.skip("no memory cgroup is visible to this process (/proc/self/cgroup, /proc/self/mountinfo)")
        parent = own[0]
        self.path = parent.path / f"finetune-tui-test-{os.getpid()}"
        self.v2 = parent.v2
        try:
            self.path.mkdir()
        except OSError as exc:
            pytest.skip(f"can't create a child memory cgroup in {parent.path}: {exc.strerror}")
        try:
            (self.path / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(limit))
            if not self.v2:
                (self.path / "memory.swappiness").write_text("0")
        except OSError as exc:
            self.remove()
            pytest.skip(f"can't set a memory limit on {self.path}: {exc.strerror}")

    def oom_kills(self) -> int:
        from engine.failures import MemoryCgroup as Reader

        return Reader(self.path, self.v2).oom_kills() or 0

    def enter(self) -> None:
        """For ``preexec_fn``: move the calling (child) process into this cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # processes still in it, being reaped
                time.sleep(0.2)
