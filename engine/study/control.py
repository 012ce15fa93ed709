"""Preparing, starting (in the foreground or detached), resuming and cancelling studies.

A detached study is ``python -m engine.study STUDY_DIR`` in a new session
(like a detached grid's orchestrator), so it outlives the terminal, the SSH
connection and the TUI; ``study.lock`` says it lives, a ``cancel`` file stops it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.config import ConfigError, StudyConfig
from engine.launcher import project_env
from engine.store import RunStore, StudyDir, StudyStatus
from engine.study.progress import StudyBusy

START_WAIT = 60.0  # seconds to wait for a detached study to hold its lock (it imports torch first)


def validate(cfg: StudyConfig, store: RunStore, missing_data: Callable | None = None) -> None:
    """Fail before anything starts: unknown datasets or extractors, missing data, runs not finished.

    With ``missing_data`` (``study run --show-config``) nothing is downloaded, and data that can't be had
    is handed to it instead of raised; an unknown dataset name still raises (as ``orchestrator.validate``)."""
    from engine.data.check import check_or_hand_on
    from engine.study.extractors import resolve

    resolve(cfg, store)
    for ds in cfg.datasets:
        check_or_hand_on(ds, cfg.data_root, download=cfg.download, cache=store.dataset_cache,
                         missing_data=missing_data)


def prepare(cfg: StudyConfig, root: str | Path) -> StudyDir:
    """Create (or re-open, for a resume) the study folder; ConfigError when the name holds another study."""
    store = RunStore(root)
    sdir = store.study(cfg.name)
    if sdir.exists():
        if sdir.config() != cfg:
            raise ConfigError(f"study {cfg.name!r} already exists in {root} with another config; pass --name NEW "
                              "for a new study, or the same settings to resume it")
        if sdir.running():
            raise StudyBusy(f"study {cfg.name!r} is already running")
    validate(cfg, store)
    sdir.path.mkdir(parents=True, exist_ok=True)
    if not sdir.exists():
        sdir.write_info(cfg)
    if not sdir.status_file.exists() or sdir.status().status != "done":
        sdir.write_status(StudyStatus(status="queued", message="queued"))
    return sdir


def start_detached(cfg: StudyConfig, root: str | Path) -> StudyDir:
    """Prepare the study and start it in its own session; returns once it holds its lock (or has ended)."""
    return spawn(prepare(cfg, root))


def resume_detached(root: str | Path, name: str) -> StudyDir:
    sdir = RunStore(root).find_study(name)
    return start_detached(sdir.config(), root)


def spawn(sdir: StudyDir) -> StudyDir:
    if sdir.running():
        raise StudyBusy(f"study {sdir.name!r} is already running")
    with open(sdir.log_file, "ab") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "engine.study", str(sdir.path)], stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=logf, env=project_env(), start_new_session=True)
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline and not sdir.running() and proc.poll() is None:
        time.sleep(0.05)
    return sdir


def cancel(root: str | Path, name: str, reason: str = "study cancelled by user") -> StudyDir:
    sdir = RunStore(root).find_study(name)
    sdir.request_cancel(reason)
    return sdir
