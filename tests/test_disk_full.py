"""A full disk ends a run as "disk full: N MB free on PATH", keeps the last good checkpoint, and resumes later.

Two ways in: a real small filesystem (a tmpfs; needs root and mount rights,
skipped otherwise), and, always, ENOSPC injected into a worker subprocess by
a ``sitecustomize`` module on its PYTHONPATH (no test hooks in the engine).
"""

import builtins
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_classifier
from engine.store import load_run
from engine.trainer import Trainer
from engine.worker import EXIT_DISK_FULL, EXIT_FAILED
from engine.worker import main as worker_main
from tests.faults_fixtures import fill, mount_tmpfs, unmount
from tests.trainer_fixtures import make_run, metrics_of, of_type, resume_point, set_config

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


def assert_disk_full(rdir, where) -> float:
    """The run failed as disk_full with the one-line message; returns the MB figure it gives."""
    failed = of_type(rdir, "failed")[-1]
    assert failed.kind == "disk_full"
    match = re.fullmatch(rf"disk full: (\d+) MB free on {re.escape(str(where))}; free some space, then run the grid "
                         r"again to resume", failed.error)
    assert match, failed.error
    summary = load_run(rdir).summary
    assert summary.status == "failed" and summary.error_kind == "disk_full"
    assert not list(rdir.glob(".*.tmp"))  # no half-written temp file left behind
    return float(match.group(1))


def assert_last_good_checkpoint(rdir, point: int, best: int, rows: int) -> None:
    """The resume point is epoch ``point``'s, best.safetensors loads as epoch ``best``, metrics.csv has ``rows``."""
    assert resume_point(rdir)["loop"]["epoch"] == point
    assert metrics_of(rdir).epoch.tolist() == list(range(1, rows + 1))
    model, meta = load_classifier(rdir / "best.safetensors")
    assert meta["epoch"] == best and model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


# --- a real small filesystem ------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MB tmpfs (test_efficientnet's resume point and best checkpoint are about 0.8 MB each)."""
    fs = mount_tmpfs(tmp_path / "fs", size_mb=8)
    yield fs
    unmount(fs)


def test_full_filesystem_ends_the_run_and_it_resumes_once_space_is_back(small_fs):
    rdir = make_run(small_fs, strategy="frozen", epochs=1)
    assert worker_main([str(rdir)]) == 0
    point_size = (rdir / "last_state.pt").stat().st_size
    set_config(rdir, "train", epochs=3)
    dummy = fill(small_fs, leave=point_size // 2)  # epoch 2's resume point can't be written
    assert worker_main([str(rdir)]) == EXIT_FAILED  # the small failed event still fits
    free = assert_disk_full(rdir, rdir)
    assert free <= point_size / 1e6
    assert_last_good_checkpoint(rdir, point=1, best=1, rows=1)
    dummy.unlink()
    assert worker_main([str(rdir)]) == 0
    assert load_run(rdir).summary.status == "done"
    assert [s.resumed_from_epoch for s in of_type(rdir, "started")] == [0, 1, 1]
    assert metrics_of(rdir).epoch.tolist() == [1, 2, 3]


def test_crash_on_a_full_filesystem_exits_disk_full_without_a_traceback_of_its_own(small_fs, monkeypatch, caplog):
    """Not even traceback.txt or the failed event fit: the worker says so with exit 4, its handler doesn't crash."""
    rdir = make_run(small_fs, strategy="frozen", epochs=1)

    def crash(self):
        fill(small_fs, leave=0)
        raise RuntimeError("boom")

    monkeypatch.setattr(Trainer, "setup", crash)
    assert worker_main([str(rdir)]) == EXIT_DISK_FULL
    assert not (rdir / "traceback.txt").exists() and not of_type(rdir, "failed")
    assert "RuntimeError: boom" in caplog.text  # the traceback went to worker.log (stderr) instead
    assert "could not record the run's end" in caplog.text


# --- ENOSPC injected into a worker subprocess ---------------------------------------------

SITECUSTOMIZE = '''
"""Test double: the N-th torch.save / safetensors save_file of this process fails as a full disk would."""
import errno
import os

import safetensors.torch
import torch


def _failing(write, env):
    at, calls = int(os.environ.get(env, "0")), []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(*args, **kwargs)

    return wrapper


torch.save = _failing(torch.save, "FAIL_TORCH_SAVE_AT")
safetensors.torch.save_file = _failing(safetensors.torch.save_file, "FAIL_SAVE_FILE_AT")
'''


def worker_subprocess(tmp_path, rdir, **fail_at) -> int:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", **{k: str(v) for k, v in fail_at.items()}}
    done = subprocess.run([sys.executable, "-m", "engine.worker", str(rdir)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in done.stdout  # stdout holds events only
    return done.returncode


@pytest.mark.parametrize("write, saved", [("FAIL_TORCH_SAVE_AT", 1), ("FAIL_SAVE_FILE_AT", 2)])
def test_enospc_on_a_checkpoint_write_keeps_the_last_good_checkpoint_and_resumes(tmp_path, write, saved):
    """torch.save #2 is epoch 2's resume point (epoch 1's stays); save_file #2 is epoch 2's best.safetensors,
    written after epoch 2's point, which stays (and the resume rewrites best.safetensors from it)."""
    rdir = make_run(tmp_path, strategy="frozen", epochs=3)
    assert worker_subprocess(tmp_path, rdir, **{write: 2}) == EXIT_FAILED
    assert_disk_full(rdir, rdir)
    assert_last_good_checkpoint(rdir, point=saved, best=1, rows=1)
    assert worker_main([str(rdir)]) == 0
    assert load_run(rdir).summary.status == "done"
    assert [s.resumed_from_epoch for s in of_type(rdir, "started")] == [0, saved]
    assert metrics_of(rdir).epoch.tolist() == [1, 2, 3]
    assert [e.epoch for e in of_type(rdir, "epoch")] == [1, 2, 3]
    _, meta = load_classifier(rdir / "best.safetensors")
    assert meta["epoch"] == 3


def test_enospc_on_traceback_txt_still_records_the_crash(tmp_path, monkeypatch):
    """The worker's error handler meets a full disk writing traceback.txt: the failed event still says what broke."""
    rdir = make_run(tmp_path, strategy="frozen", epochs=1)
    real_open = builtins.open

    def no_space_for_tracebacks(file, *args, **kwargs):
        if ".traceback.txt." in os.fspath(file):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(file))
        return real_open(file, *args, **kwargs)

    def crash(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(Trainer, "setup", crash)
    monkeypatch.setattr(builtins, "open", no_space_for_tracebacks)
    assert worker_main([str(rdir)]) == EXIT_FAILED
    monkeypatch.undo()
    (failed,) = of_type(rdir, "failed")
    assert failed.kind == "crash" and failed.traceback_file == ""
    assert failed.error == "RuntimeError: boom (full traceback in worker.log)"
    assert not (rdir / "traceback.txt").exists() and not list(rdir.glob(".*.tmp"))
