"""Drive a grid: prepare its folders, run workers under a concurrency limit, resume.

``python -m engine.orchestrator GRID_DIR`` runs a prepared grid (this is what a
detached start execs, in its own session so it outlives the terminal).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from engine import events as ev
from engine.config import ConfigError, GridConfig, check_grid_name
from engine.errors import UserError
from engine.launcher import Launcher, RunHandle, SubprocessLauncher, project_env
from engine.store import GridDir, RunDir, RunStore, RunWriter, is_dead_worker_error, load_run

log = logging.getLogger(__name__)

EXIT_DISK_FULL = 4  # engine.worker's code when not even its failed event could be written
KILL_AFTER = 30.0  # seconds a worker may ignore its cancel file before it is killed


class GridBusy(UserError):
    """Another orchestrator holds the grid."""


# --- preparing a grid -------------------------------------------------------


def validate(grid: GridConfig) -> None:
    """Fail before anything starts: unknown names, missing data sources."""
    from engine.backbones import resolve_backbone
    from engine.data import check_dataset
    from engine.strategies import get_strategy

    check_grid_name(grid.name)
    from engine.search import check_search

    check_search(grid)
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
    gdir = RunStore(root).grid(grid.name)
    if gdir.exists():
        if gdir.config() != grid:
            raise ConfigError(
                f"grid {grid.name!r} already exists in {root} with another config; "
                f"pass --name NEW for a new grid, or the same settings to resume it"
            )
    runs = [] if grid.search.enabled else grid.runs()  # a search's trials are made as it goes (engine.search)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError("grid has duplicate runs (a name listed twice?)")
    gdir.path.mkdir(parents=True, exist_ok=True)
    if not gdir.exists():
        gdir.write_info(grid, ids)
    for r in runs:
        rd = gdir.run(r.run_id)
        if not rd.config_file.exists():
            rd.write_config(_absolute_paths(r))
    return gdir.path


def _absolute_paths(run):
    """A run's folder must not depend on where a later reader (export, report) is started."""
    data = replace(run.data, data_root=str(Path(run.data.data_root).expanduser().resolve()))
    model = run.model
    if model.weights not in ("pretrained", "random"):
        model = replace(model, weights=str(Path(model.weights).expanduser().resolve()))
    return replace(run, data=data, model=model)


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
    run: RunDir
    handle: RunHandle | None  # None = adopted: a worker from an earlier orchestrator, still alive
    gpu: int | None
    cancel_sent: float = 0.0

    @property
    def run_dir(self) -> Path:
        return self.run.path


class Orchestrator:
    def __init__(self, gdir: Path, launcher: Launcher | None = None, on_event: Callable | None = None,
                 concurrency: int = 0):
        self.grid_dir = GridDir(gdir)
        self.gdir = self.grid_dir.path
        self.grid = self.grid_dir.config()
        self.launcher = launcher or SubprocessLauncher()
        self.on_event = on_event or (lambda run_id, event: None)
        self.gpus = gpu_ids(self.grid.base.train.device)
        self.concurrency = concurrency or self.grid.concurrency or max(1, len(self.gpus))
        cores = os.cpu_count() or 1
        self.threads = self.grid.base.train.threads or (0 if self.gpus else max(1, cores // self.concurrency))
        self.lock = self.grid_dir.lock()
        self.search = None
        if self.grid.search.enabled:
            from engine.search import SearchDriver

            self.search = SearchDriver(self.grid_dir, self.grid)

    def pending(self) -> list[RunDir]:
        """Runs to (re)start: everything not done, in grid order."""
        out = []
        for rd in self.grid_dir.run_dirs():
            rec = load_run(rd)
            if rec.problem or rec.summary.status == "done":
                continue
            if self.search is not None and self.search.is_settled(rd):  # a pruned trial is over
                continue
            out.append(rd)
        return out

    def run(self) -> dict[str, int]:
        if not self.lock.acquire():
            raise GridBusy(f"grid {self.gdir.name!r} is already running (another orchestrator holds "
                           f"{self.grid_dir.lock_file})")
        self.grid_dir.clear_cancel()
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
        for rd in queue:
            if not rd.alive():  # a live worker we are about to adopt keeps any cancel just sent to it
                rd.clear_cancel()
        active: list[Slot] = []
        try:
            while queue or active or (self.search is not None and self.search.wants_more()
                                      and not self.grid_dir.cancel_reason()):
                grid_cancel = self.grid_dir.cancel_reason()
                if grid_cancel:
                    for rd in queue:
                        self._mark(rd, ev.Cancelled(reason=grid_cancel))
                    queue = []
                    for s in active:
                        if not s.cancel_sent:
                            s.run.request_cancel(grid_cancel)
                            s.cancel_sent = time.monotonic()
                if self.search is not None and not queue and len(active) < self.concurrency:
                    trial = self.search.next_run()  # a search makes its next trial when a slot is free
                    if trial is not None:
                        queue.append(trial)
                while queue and len(active) < self.concurrency:
                    rd = queue.pop(0)
                    reason = rd.cancel_reason()
                    if reason and not rd.alive():
                        self._mark(rd, ev.Cancelled(reason=reason))
                        continue
                    active.append(self._start(rd, active))
                for s in list(active):
                    if not s.cancel_sent and s.run.cancel_reason():
                        s.cancel_sent = time.monotonic()  # a cancel sent to the run itself (TUI, CLI)
                    if self._finished(s):
                        active.remove(s)
                        if self.search is not None:
                            self.search.settle(s.run)
                    elif s.cancel_sent and time.monotonic() - s.cancel_sent > KILL_AFTER and s.handle is not None:
                        log.warning("%s: ignored its cancel request for %.0f s; killing it", s.run.run_id, KILL_AFTER)
                        s.handle.kill()
                time.sleep(0.2)
        except KeyboardInterrupt:
            log.warning("interrupted: stopping %d running run(s)", len(active))
            self._stop_all(active)
            raise

    def _start(self, rd: RunDir, active: list[Slot]) -> Slot:
        busy = [s.gpu for s in active]
        gpu = min(self.gpus, key=busy.count) if self.gpus else None
        if rd.alive():  # a worker left by a dead orchestrator: wait for it, don't double-train
            log.info("%s: adopting a live worker", rd.run_id)
            return Slot(rd, None, gpu)
        run_id = rd.run_id
        handle = self.launcher.launch(rd.path, gpu, self.threads, lambda line: self._line(run_id, line))
        log.info("%s: started (pid %s, gpu %s)", run_id, handle.pid, gpu)
        return Slot(rd, handle, gpu)

    def _line(self, run_id: str, line: str) -> None:
        event = ev.parse_event(line)
        if event is not None:
            if self.search is not None:
                self.search.observe(run_id, event)  # may ask the run to stop (a pruned trial)
            self.on_event(run_id, event)

    def _finished(self, s: Slot) -> bool:
        if s.handle is None:
            if s.run.alive():
                return False
            self._ensure_terminal(s.run, ev.Failed(error="adopted worker ended without a final event", kind="killed"))
            return True
        code = s.handle.poll()
        if code is None:
            return False
        if code < 0 and s.cancel_sent:
            final = ev.Cancelled(reason=f"killed after ignoring its cancel request for {KILL_AFTER:.0f} s")
        elif code < 0:
            final = ev.Failed(error=f"worker killed by {signal.Signals(-code).name}", kind="killed")
        elif code == EXIT_DISK_FULL:
            from engine.errors import disk_full_message

            final = ev.Failed(error=disk_full_message(s.run.path), kind="disk_full")
        else:
            final = ev.Failed(error=f"worker exited with code {code} before reporting; see {s.run.worker_log}",
                              kind="crash")
        time.sleep(0.05)  # give the pipe reader a moment to deliver the last lines
        self._ensure_terminal(s.run, final)
        return True

    def _ensure_terminal(self, rd: RunDir, final: ev.Event) -> None:
        rec = load_run(rd)
        if rec.summary.status in ev.TERMINAL and not is_dead_worker_error(rec.summary.error):
            return
        self._mark(rd, final)

    def _mark(self, rd: RunDir, event: ev.Event) -> None:
        try:
            writer = RunWriter(rd, echo=False)
            try:
                writer.emit(event)
            finally:
                writer.close()
        except OSError as exc:  # a full disk: the run reads as stopped; resuming the grid retries it
            log.error("%s: could not record %s: %s", rd.run_id, event.type, exc)
        self.on_event(rd.run_id, event)

    def _stop_all(self, active: list[Slot]) -> None:
        for s in active:
            s.run.request_cancel("grid interrupted")
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


# --- detached start ----------------------------------------------------------


def start_detached(grid: GridConfig, root: str | Path) -> Path:
    """Prepare the grid and start its orchestrator in a new session (outlives this process)."""
    gdir = prepare(grid, root)
    return _spawn(GridDir(gdir))


def resume_detached(root: str | Path, grid_name: str) -> Path:
    gdir = RunStore(root).find_grid(grid_name)
    validate(gdir.config())
    return _spawn(gdir)


def _spawn(gdir: GridDir) -> Path:
    if gdir.running():
        raise GridBusy(f"grid {gdir.name!r} is already running")
    with open(gdir.orchestrator_log, "ab") as logf:
        subprocess.Popen(
            [sys.executable, "-m", "engine.orchestrator", str(gdir.path)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=project_env(), start_new_session=True,
        )
    # wait until it holds the lock, so callers (and a TUI) see it as running
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not gdir.running():
        time.sleep(0.05)
    return gdir.path


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
