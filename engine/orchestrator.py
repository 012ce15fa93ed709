"""Drive a grid: prepare its folders, run workers under a concurrency limit, resume.

``python -m engine.orchestrator GRID_DIR`` runs a prepared grid (this is what a
detached start execs, in its own session so it outlives the terminal).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine import events as ev
from engine.config import ConfigError, GridConfig, check_grid_name
from engine.control import cancel_requested, cancel_run, clear_cancel
from engine.launcher import Launcher, RunHandle, SubprocessLauncher
from engine.store import FileLock, RunStore, atomic_write_json, is_locked, load_run, read_json

log = logging.getLogger(__name__)


class GridBusy(Exception):
    """Another orchestrator holds the grid."""


# --- preparing a grid -------------------------------------------------------


def validate(grid: GridConfig) -> None:
    """Fail before anything starts: unknown names, missing data sources."""
    from engine.backbones import resolve_backbone
    from engine.data import check_dataset
    from engine.strategies import get_strategy

    check_grid_name(grid.name)
    for s in grid.strategies:
        get_strategy(s)
    for b in grid.backbones:
        resolve_backbone(b)
    w = grid.base.model.weights
    if w not in ("pretrained", "random") and not Path(w).expanduser().is_file():
        raise ConfigError(f"weights file {w} not found; pass an existing .safetensors/.pth, 'pretrained' or 'random'")
    for d in grid.datasets:
        check_dataset(d, grid.base.data.data_root, download=grid.base.data.download)


def prepare(grid: GridConfig, root: str | Path) -> Path:
    """Create (or re-open) the grid folder and a folder per run with its resolved config."""
    validate(grid)
    gdir = Path(root) / grid.name
    info_path = gdir / "grid.json"
    config = grid.to_dict()
    if info_path.exists():
        old = read_json(info_path)
        if old.get("config") != json.loads(json.dumps(config)):
            raise ConfigError(
                f"grid {grid.name!r} already exists in {root} with another config; "
                f"pass --name NEW for a new grid, or the same settings to resume it"
            )
    runs = grid.runs()
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError("grid has duplicate runs (a name listed twice?)")
    gdir.mkdir(parents=True, exist_ok=True)
    if not info_path.exists():
        atomic_write_json(info_path, {"name": grid.name, "config": config, "runs": ids, "created": time.time()})
    for r in runs:
        rdir = gdir / r.run_id
        if not (rdir / "config.json").exists():
            atomic_write_json(rdir / "config.json", _absolute_paths(r).to_dict())
    return gdir


def _absolute_paths(run):
    """A run's folder must not depend on where a later reader (export, report) is started."""
    from dataclasses import replace

    data = replace(run.data, data_root=str(Path(run.data.data_root).expanduser().resolve()))
    model = run.model
    if model.weights not in ("pretrained", "random"):
        model = replace(model, weights=str(Path(model.weights).expanduser().resolve()))
    return replace(run, data=data, model=model)


def load_grid(gdir: Path) -> GridConfig:
    return GridConfig.from_dict(read_json(gdir / "grid.json")["config"], str(gdir / "grid.json"))


# --- devices -------------------------------------------------------------


def gpu_ids(device: str) -> list[int]:
    """GPUs to spread runs over; empty = CPU."""
    if device == "cpu":
        return []
    if device.startswith("cuda:"):
        return [int(device.split(":")[1])]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:
        return []


# --- running ----------------------------------------------------------------


@dataclass
class Slot:
    run_dir: Path
    handle: RunHandle | None  # None = adopted: a worker from an earlier orchestrator, still alive
    gpu: int | None
    cancel_sent: float = 0.0


class Orchestrator:
    def __init__(self, gdir: Path, launcher: Launcher | None = None, on_event: Callable | None = None,
                 concurrency: int = 0):
        self.gdir = Path(gdir)
        self.grid = load_grid(self.gdir)
        self.launcher = launcher or SubprocessLauncher()
        self.on_event = on_event or (lambda run_id, event: None)
        self.gpus = gpu_ids(self.grid.base.train.device)
        self.concurrency = concurrency or self.grid.concurrency or max(1, len(self.gpus))
        cores = os.cpu_count() or 1
        self.threads = self.grid.base.train.threads or (0 if self.gpus else max(1, cores // self.concurrency))
        self.lock = FileLock(self.gdir / "grid.lock")

    def pending(self) -> list[Path]:
        """Runs to (re)start: everything not done, in grid order."""
        out = []
        for rdir in RunStore(self.gdir.parent).run_dirs(self.gdir.name):
            rec = load_run(rdir)
            if rec.problem or rec.summary.status == "done":
                continue
            out.append(rdir)
        return out

    def run(self) -> dict[str, int]:
        if not self.lock.acquire():
            raise GridBusy(f"grid {self.gdir.name!r} is already running (another orchestrator holds {self.gdir / 'grid.lock'})")
        clear_cancel(self.gdir)
        try:
            self._loop()
        finally:
            self.lock.release()
        counts: dict[str, int] = {}
        for rec in RunStore(self.gdir.parent).runs(self.gdir.name):
            counts[rec.summary.status] = counts.get(rec.summary.status, 0) + 1
        return counts

    def _loop(self) -> None:
        queue = self.pending()
        for rdir in queue:
            clear_cancel(rdir)
        active: list[Slot] = []
        try:
            while queue or active:
                grid_cancel = cancel_requested(self.gdir)
                if grid_cancel:
                    for rdir in queue:
                        self._mark(rdir, ev.Cancelled(reason=grid_cancel))
                    queue = []
                    for s in active:
                        if not s.cancel_sent:
                            cancel_run(s.run_dir, grid_cancel)
                            s.cancel_sent = time.monotonic()
                while queue and len(active) < self.concurrency:
                    rdir = queue.pop(0)
                    reason = cancel_requested(rdir)
                    if reason:
                        self._mark(rdir, ev.Cancelled(reason=reason))
                        continue
                    active.append(self._start(rdir, active))
                for s in list(active):
                    if self._finished(s):
                        active.remove(s)
                    elif s.cancel_sent and time.monotonic() - s.cancel_sent > 30 and s.handle is not None:
                        s.handle.kill()  # a worker that ignores its cancel file
                time.sleep(0.2)
        except KeyboardInterrupt:
            log.warning("interrupted: stopping %d running run(s)", len(active))
            self._stop_all(active)
            raise

    def _start(self, rdir: Path, active: list[Slot]) -> Slot:
        busy = [s.gpu for s in active]
        gpu = min(self.gpus, key=busy.count) if self.gpus else None
        if is_locked(rdir / "run.lock"):  # a worker left by a dead orchestrator: wait for it, don't double-train
            log.info("%s: adopting a live worker", rdir.name)
            return Slot(rdir, None, gpu)
        run_id = rdir.name
        handle = self.launcher.launch(rdir, gpu, self.threads, lambda line: self._line(run_id, line))
        log.info("%s: started (pid %s, gpu %s)", run_id, handle.pid, gpu)
        return Slot(rdir, handle, gpu)

    def _line(self, run_id: str, line: str) -> None:
        event = ev.parse_event(line)
        if event is not None:
            self.on_event(run_id, event)

    def _finished(self, s: Slot) -> bool:
        if s.handle is None:
            if is_locked(s.run_dir / "run.lock"):
                return False
            self._ensure_terminal(s.run_dir, "adopted worker ended without a final event")
            return True
        code = s.handle.poll()
        if code is None:
            return False
        if code < 0:
            why = f"worker killed by {signal.Signals(-code).name}"
        else:
            why = f"worker exited with code {code} before reporting; see {s.run_dir / 'worker.log'}"
        # give the pipe reader a moment to deliver the last lines
        time.sleep(0.05)
        self._ensure_terminal(s.run_dir, why)
        return True

    def _ensure_terminal(self, rdir: Path, why: str) -> None:
        rec = load_run(rdir)
        if rec.summary.status in ("done", "failed", "cancelled") and rec.summary.error != _dead_marker():
            return
        self._mark(rdir, ev.Failed(error=why, kind="killed"))

    def _mark(self, rdir: Path, event: ev.Event) -> None:
        from engine.run_writer import RunWriter

        writer = RunWriter(rdir, echo=False)
        try:
            writer.emit(event)
        finally:
            writer.close()
        self.on_event(rdir.name, event)

    def _stop_all(self, active: list[Slot]) -> None:
        for s in active:
            cancel_run(s.run_dir, "grid interrupted")
            if s.handle is not None:
                try:
                    s.handle.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(s.handle and s.handle.poll() is None for s in active):
            time.sleep(0.1)
        for s in active:
            if s.handle is not None and s.handle.poll() is None:
                s.handle.kill()
            self._finished(s)


def _dead_marker() -> str:
    from engine.store import DEAD_WORKER

    return DEAD_WORKER


# --- detached start ----------------------------------------------------------


def start_detached(grid: GridConfig, root: str | Path) -> Path:
    """Prepare the grid and start its orchestrator in a new session (outlives this process)."""
    gdir = prepare(grid, root)
    return _spawn(gdir)


def resume_detached(root: str | Path, grid_name: str) -> Path:
    gdir = Path(root) / grid_name
    if not (gdir / "grid.json").exists():
        raise ConfigError(f"no grid {grid_name!r} in {root}; `finetune-tui runs --runs {root}` lists grids")
    validate(load_grid(gdir))
    return _spawn(gdir)


def _spawn(gdir: Path) -> Path:
    if is_locked(gdir / "grid.lock"):
        raise GridBusy(f"grid {gdir.name!r} is already running")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(gdir / "orchestrator.log", "ab") as logf:
        subprocess.Popen(
            [sys.executable, "-m", "engine.orchestrator", str(gdir)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env, start_new_session=True,
        )
    # wait until it holds the lock, so callers (and a TUI) see it as running
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not is_locked(gdir / "grid.lock"):
        time.sleep(0.05)
    return gdir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gdir = Path(argv[0])
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        counts = Orchestrator(gdir).run()
    except GridBusy as exc:
        log.error("%s", exc)
        return 3
    except KeyboardInterrupt:
        return 130
    log.info("grid %s finished: %s", gdir.name, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
