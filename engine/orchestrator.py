"""Drive a grid: prepare its folders, run workers under a concurrency limit, resume.

``python -m engine.orchestrator GRID_DIR [--lock-fd N]`` runs a prepared grid (this is
what a detached start execs, in its own session so it outlives the terminal). A
detached start takes the grid lock itself and hands it to the orchestrator it
spawns (an inherited flock stays held), so two starts of one grid can't both
pass the check: the second says "already running".

A write the orchestrator can't make (a full disk) never ends it with a
traceback: the event stays pending and is retried; a full disk stops the grid
(no new runs; queued ones are marked where that still fits) and the run ends
with the one "disk full: N MB free on PATH" line, the grid resumable.
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
from engine.cpu_claims import Claim, claimed, cpu_threads
from engine.errors import DiskFull, StoreError, UserError, is_disk_full
from engine.failures import MemoryWatch
from engine.launcher import Launcher, Resources, RunHandle, project_env
from engine.store import FileLock, GridDir, RunDir, RunStore, RunWriter, is_dead_worker_error, load_run
from engine.warm_launcher import default_launcher

log = logging.getLogger(__name__)

EXIT_DISK_FULL = 4  # engine.worker's code when not even its failed event could be written
KILL_AFTER = 30.0  # seconds a worker may ignore its cancel file before it is killed
SAMPLE_EVERY = 1.0  # seconds between memory samples of a live worker (to tell an OOM kill from a plain SIGKILL)
RETRY_EVERY = 2.0  # seconds between tries to record an event a write failure left pending
REBALANCE_EVERY = 2.0  # seconds between looks at the CPU threads other grids' runs on this host claim


class GridBusy(UserError):
    """Another orchestrator holds the grid."""


# --- preparing a grid -------------------------------------------------------


def validate(grid: GridConfig, root: str | Path | None = None,
             missing_data: Callable[[UserError], None] | None = None) -> None:
    """Fail before anything starts: unknown names, a missing weights file, missing data sources, unreadable
    images (all named at once).

    With ``missing_data`` (``--show-config``), a data source that isn't there is handed to it instead of
    raised, and nothing is downloaded; an unknown dataset name is still an error.
    """
    from engine.backbones import resolve_backbone
    from engine.data.check import check_grid_data
    from engine.strategies import get_strategy

    check_grid_name(grid.name)
    if grid.executor == "ray":
        from engine.ray_launcher import import_ray

        import_ray()  # one line naming the extra when ray isn't installed, before anything is made
    from engine.search import check_search

    check_search(grid)
    for s in grid.strategies:
        get_strategy(s)
    for b in grid.backbones:
        resolve_backbone(b)
    # every run's weights and device, not only the base's: [axes] and [overrides] may set them per run
    runs = [] if grid.search.enabled else grid.runs()
    for w in dict.fromkeys([grid.base.model.weights] + [r.model.weights for r in runs]):
        if w in ("pretrained", "random"):
            continue
        where = Path(w).expanduser()
        if not w.strip() or where.is_dir():
            what = "is empty" if not w.strip() else f"{w} is a folder, not a weights file"
            raise ConfigError(f"model.weights {what}; pass 'pretrained', 'random' or a .safetensors/.pth file")
        if not where.is_file():
            raise ConfigError(f"weights file {w} not found; pass an existing .safetensors/.pth, 'pretrained' "
                              "or 'random'")
        from engine.weights import FORMATS, weights_file_problem  # torch: only for a grid with a weights file

        problem = weights_file_problem(where)
        if problem:
            raise ConfigError(f"weights file {w} {problem}; pass {FORMATS}, or 'pretrained' or 'random'")
    # "tpu", or CUDA on a machine without it: one line before any run starts (auto and cpu need no torch to
    # tell); not for a cluster, whose nodes may have the GPUs this machine lacks
    devices = {grid.base.train.device} | {r.train.device for r in runs}
    if grid.executor != "ray" and devices - {"auto", "cpu"}:
        from engine.device import resolve_device

        for device in sorted(devices):
            resolve_device(device)
    check_grid_data(grid, root, missing_data=missing_data)


def prepare(grid: GridConfig, root: str | Path) -> Path:
    """Create (or re-open) the grid folder and a folder per run with its resolved config."""
    validate(grid, root)
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
        twice = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"grid {grid.name!r} has the run {twice!r} twice: a name listed twice in datasets, "
                          "backbones or strategies, or [axes] values that give the same run id")
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
    data = replace(run.data, data_root=str(Path(run.data.data_root).expanduser().resolve()),
                   cache_dir=str(Path(run.data.cache_dir).expanduser().resolve()) if run.data.cache_dir else "")
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
    memory: MemoryWatch | None = None
    sampled: float = 0.0
    claim: Claim | None = None  # its CPU threads, claimed on this host while it runs (engine.cpu_claims)

    @property
    def run_dir(self) -> Path:
        return self.run.path


class Orchestrator:
    def __init__(self, gdir: Path, launcher: Launcher | None = None, on_event: Callable | None = None,
                 concurrency: int = 0, lock: FileLock | None = None):
        self.grid_dir = GridDir(gdir)
        self.gdir = self.grid_dir.path
        self.grid = self.grid_dir.config()
        self.launcher = launcher or make_launcher(self.grid)  # default: forked from a warm process
        self.on_event = on_event or (lambda run_id, event: None)
        device = self.grid.base.train.device
        if self.launcher.local:
            self.gpus = gpu_ids(device)
            request = Resources(gpus=1 if self.gpus else 0, gpu_pool=tuple(self.gpus))
        else:  # a cluster: one GPU a run unless told the CPU (its launcher drops it where no node has one)
            self.gpus = []
            request = Resources(threads=self.grid.base.train.threads or 1, gpus=0 if device == "cpu" else 1)
        self.concurrency = concurrency or self.grid.concurrency or self.launcher.capacity(request)
        cores = os.cpu_count() or 1
        self.threads = self.grid.base.train.threads or (
            request.threads if not self.launcher.local else 0 if self.gpus else max(1, cores // self.concurrency))
        self.request = replace(request, threads=self.threads)
        # this host's CPU runs claim their threads; a grid sharing the cores counts the other grids' claims
        self.claims = self.launcher.local and not self.gpus
        self.shares_cores = self.claims and not self.grid.base.train.threads
        self._balanced = 0.0  # when the shares were last looked at (_rebalance)
        self.retries: dict[RunDir, int] = {}  # re-queues after a lost node, per run (grid.retries at most)
        # re-queued after a lost node: its actor died with the node, so it starts anew rather than being
        # adopted (the cluster may still list the dead actor by name for a moment)
        self.relaunch: set[RunDir] = set()
        self.requeued: list[RunDir] = []  # runs a lost node took, to start again elsewhere
        self.lock = lock or self.grid_dir.lock()  # a detached start hands over the lock it took
        self.disk_full: DiskFull | None = None  # set once a write met a full disk: the grid stops
        self.unrecorded: dict[RunDir, ev.Event] = {}  # events a failed write left to record
        self.interrupted = False  # Ctrl-C / SIGTERM: the runs still going are being stopped
        self._retried = 0.0
        self.search = None
        if self.grid.search.enabled:
            from engine.search import SearchDriver

            self.search = SearchDriver(self.grid_dir, self.grid)

    def pending(self) -> list[RunDir]:
        """Runs to (re)start: everything not done, in grid order; and a done run whose results.json,
        best.safetensors or test_probs.npz is gone (its worker tests it again from the resume point, which
        rebuilds them)."""
        return [rd for rd, _ in self._pending_statuses()]

    def _pending_statuses(self) -> list[tuple[RunDir, str]]:
        """``pending``'s runs with the status each has now."""
        out = []
        for rd in self.grid_dir.run_dirs():
            rec = load_run(rd)
            if rec.problem or (rec.summary.status == "done" and all(
                    p.is_file() for p in (rd.results_file, rd.best, rd.probs_file))):
                continue
            if self.search is not None and self.search.is_settled(rd):  # a pruned trial is over
                continue
            out.append((rd, rec.summary.status))
        return out

    def run(self) -> dict[str, int]:
        """Run the grid to its end; DiskFull (one line) when a full disk stopped it."""
        if not self.lock.held:  # a handed-over lock comes with its stale cancels already cleared
            if not self.lock.acquire():
                raise GridBusy(f"grid {self.gdir.name!r} is already running (another orchestrator holds "
                               f"{self.grid_dir.lock_file})")
            clear_stale_cancels(self.grid_dir)
        try:
            self._loop()
            self._retry(force=True)
        finally:
            self.lock.release()
        if self.disk_full is not None:
            raise DiskFull(self.gdir)  # the space left now, named once; the grid resumes once there is more
        counts: dict[str, int] = {}
        for rec in RunStore(self.gdir.parent).runs(self.gdir.name):
            counts[rec.summary.status] = counts.get(rec.summary.status, 0) + 1
        return counts

    def _loop(self) -> None:
        pending = self._pending_statuses()
        queue = [rd for rd, _ in pending]
        # failed and cancelled runs of a resumed grid read as queued from its start, not as they ended until
        # their turn comes (a live worker's run is running, and left as it is)
        for rd, status in pending:
            if status in ("failed", "cancelled"):
                self._mark(rd, ev.Queued(reason="grid resumed; waiting for a worker"))
        active: list[Slot] = []
        try:
            while queue or active or self.requeued or (self.search is not None and self.search.wants_more()
                                      and not self.grid_dir.cancel_reason() and self.disk_full is None):
                if self.disk_full is not None and queue:
                    # nothing new starts on a full disk; the queued runs say why where that still fits
                    for rd in queue:
                        self._mark(rd, ev.Failed(error=f"not started: {self.disk_full}", kind="disk_full"))
                    queue = []
                grid_cancel = self.grid_dir.cancel_reason()
                if grid_cancel:
                    for rd in queue:
                        self._mark(rd, ev.Cancelled(reason=grid_cancel))
                    queue = []
                    for s in active:
                        if not s.cancel_sent:
                            self._ask_to_stop(s, grid_cancel)
                            s.cancel_sent = time.monotonic()
                if self.requeued:
                    queue[:0], self.requeued = self.requeued, []
                if self.search is not None and not queue and len(active) < self.concurrency \
                        and self.disk_full is None and not self.interrupted:
                    trial = self.search.next_run()  # a search makes its next trial when a slot is free
                    if trial is not None:
                        queue.append(trial)
                while queue and len(active) < self.concurrency:
                    rd = queue.pop(0)
                    reason = rd.cancel_reason()
                    if reason and not rd.alive():
                        self._mark(rd, ev.Cancelled(reason=reason))
                        continue
                    try:
                        active.append(self._start(rd, active))
                    except OSError as exc:  # worker.log can't be opened, the process can't be made
                        kind = "disk_full" if is_disk_full(exc) else "crash"
                        self._mark(rd, ev.Failed(error=f"its worker could not start: {exc}", kind=kind))
                        if kind == "disk_full":
                            self._stop_for(DiskFull(rd.path))
                self._rebalance(active)
                for s in list(active):
                    self._sample(s)
                    if not s.cancel_sent and s.run.cancel_reason():
                        s.cancel_sent = time.monotonic()  # a cancel sent to the run itself (TUI, CLI)
                    if self._finished(s):
                        active.remove(s)
                        if s.claim is not None:
                            s.claim.stop()
                        if self.search is not None:
                            self.search.settle(s.run)
                    elif s.cancel_sent and time.monotonic() - s.cancel_sent > KILL_AFTER and s.handle is not None:
                        log.warning("%s: ignored its cancel request for %.0f s; killing it", s.run.run_id, KILL_AFTER)
                        s.handle.kill()
                self._retry()
                time.sleep(0.2)
        except KeyboardInterrupt:
            log.info("interrupted: stopping %d running run(s)", len(active))
            self._stop_all(active)
            raise

    def _start(self, rd: RunDir, active: list[Slot]) -> Slot:
        busy = [s.gpu for s in active]
        gpu = min(self.gpus, key=busy.count) if self.gpus else None
        run_id = rd.run_id
        adopt = getattr(self.launcher, "adopt", None)  # a cluster's runs outlive their orchestrator
        if rd in self.relaunch:
            self.relaunch.discard(rd)
            adopt = None
        handle = adopt(rd.path, lambda line: self._line(run_id, line)) if adopt is not None else None
        if handle is not None:
            log.info("%s: adopting its live worker (%s)", run_id, handle.id)
            return Slot(rd, handle, gpu)
        if rd.alive():  # a worker left by a dead orchestrator: wait for it, don't double-train
            log.info("%s: adopting a live worker", rd.run_id)
            return Slot(rd, None, gpu, claim=Claim(self.threads or 1).start() if self.claims else None)
        threads = self._threads(rd, active)
        claim = Claim(threads or 1).start() if self.claims else None
        try:
            request = replace(self.request, gpu_index=gpu, threads=threads,
                              claim=str(claim.path) if claim is not None and claim.path and self.shares_cores else "")
            handle = self.launcher.launch(rd.path, request, lambda line: self._line(run_id, line))
        except BaseException:
            if claim is not None:
                claim.stop()
            raise
        log.info("%s: started (%s on %s, gpu %s)", run_id, getattr(handle, "id", f"pid {handle.pid}"),
                 getattr(handle, "host", "") or "a node not chosen yet", gpu)
        memory = MemoryWatch(handle.pid) if self.launcher.local and handle.pid else None
        return Slot(rd, handle, gpu, memory=memory, claim=claim)

    def _threads(self, rd: RunDir, active: list[Slot]) -> int:
        """The run's CPU threads: the grid's share, fewer where other grids' runs use this host's cores too."""
        if not self.shares_cores:
            return self.threads
        other_runs, other_threads = others = claimed(exclude_pid=os.getpid())
        threads = self._share(active, others)
        if other_runs:
            message = (f"{other_runs} run(s) of other grids on this host use {other_threads} CPU thread(s): this "
                       f"one gets {threads} of {os.cpu_count() or 1} cores (train.threads sets a number)")
            log.info("%s: %s", rd.run_id, message)
            self._mark(rd, ev.Log(message=message), announce=False)
        return threads

    def _rebalance(self, active: list[Slot]) -> None:
        """Every few seconds, each running run's share again as other grids' runs start and end; its worker
        takes the new count up between batches (adopted workers don't follow this orchestrator's claims)."""
        now = time.monotonic()
        if not self.shares_cores or not active or now - self._balanced < REBALANCE_EVERY:
            return
        self._balanced = now
        others = claimed(exclude_pid=os.getpid())
        for s in active:
            if s.claim is None or s.handle is None:
                continue
            threads = self._share([o for o in active if o is not s], others)
            if threads != s.claim.threads:
                log.info("%s: %d CPU thread(s) instead of %d (%d run(s) of other grids on this host)",
                         s.run.run_id, threads, s.claim.threads, others[0])
                s.claim.update(threads)

    def _share(self, beside: list[Slot], others: tuple[int, int]) -> int:
        """A run's threads beside the grid's runs ``beside`` and the other grids' (runs, threads) ``others``."""
        own = [s.claim.threads if s.claim is not None else self.threads for s in beside]
        return cpu_threads(os.cpu_count() or 1, self.concurrency, own, *others)

    def _sample(self, s: Slot) -> None:
        """A memory sample of a live worker, about once a second."""
        now = time.monotonic()
        if s.memory is not None and now - s.sampled >= SAMPLE_EVERY:
            s.sampled = now
            s.memory.sample()

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
        lost = getattr(s.handle, "lost_node", "")
        if lost:
            return self._lost(s, lost)
        if code < 0 and self.interrupted:
            final = ev.Cancelled(reason="grid interrupted")
        elif code < 0 and s.cancel_sent:
            final = ev.Cancelled(reason=f"killed after ignoring its cancel request for {KILL_AFTER:.0f} s")
        elif code == -signal.SIGKILL and s.memory is not None and s.memory.oom_killed():
            failure = s.memory.failure(_batch_size(s.run))
            final = ev.Failed(error=failure.message, kind=failure.kind)
        elif code < 0:
            final = ev.Failed(error=f"worker killed by {_signal_name(-code)}", kind="killed")
        elif code == EXIT_DISK_FULL:
            from engine.errors import disk_full_message

            final = ev.Failed(error=disk_full_message(s.run.path), kind="disk_full")
        else:
            final = ev.Failed(error=f"worker exited with code {code} before reporting; see {s.run.worker_log}",
                              kind="crash")
        time.sleep(0.05)  # give the pipe reader a moment to deliver the last lines
        self._ensure_terminal(s.run, final)
        if code == EXIT_DISK_FULL or load_run(s.run).summary.error_kind == "disk_full":
            self._stop_for(DiskFull(s.run.path))
        return True

    def _lost(self, s: Slot, host: str) -> bool:
        """The node a run was on is gone: the run failed, and starts again elsewhere (from its last_state.pt)
        while it has retries left and nothing asked it to stop."""
        self._ensure_terminal(s.run, ev.Failed(error=f"node lost: {host}", kind="killed"))
        s.run.clear_heartbeat()  # its host's last beat is a dead worker's: don't wait for it to age
        used = self.retries.get(s.run, 0)
        stopping = s.cancel_sent or self.interrupted or self.grid_dir.cancel_reason() or self.disk_full
        if used < self.grid.retries and not stopping:
            self.retries[s.run] = used + 1
            log.info("%s: node lost: %s; starting it again elsewhere (retry %d of %d)", s.run.run_id, host,
                     used + 1, self.grid.retries)
            self.requeued.append(s.run)
            self.relaunch.add(s.run)
        else:
            log.info("%s: node lost: %s; no retries left", s.run.run_id, host)
        return True

    def _ensure_terminal(self, rd: RunDir, final: ev.Event) -> None:
        rec = load_run(rd)
        if rec.summary.status in ev.TERMINAL and not is_dead_worker_error(rec.summary.error):
            return
        self._mark(rd, final)

    def _mark(self, rd: RunDir, event: ev.Event, announce: bool = True) -> bool:
        """Record ``event`` as the run's; a write that fails leaves it pending (retried), and never ends the grid."""
        try:
            writer = RunWriter(rd, echo=False)
            try:
                writer.emit(event)
            finally:
                writer.close()
        except (OSError, StoreError) as exc:  # DiskFull is a StoreError
            log.info("%s: could not record %s: %s", rd.run_id, event.type, exc)
            self.unrecorded[rd] = event
            if is_disk_full(exc):
                self._stop_for(exc if isinstance(exc, DiskFull) else DiskFull(rd.path))
            recorded = False
        else:
            self.unrecorded.pop(rd, None)
            recorded = True
        if announce:
            self.on_event(rd.run_id, event)
        return recorded

    def _retry(self, force: bool = False) -> None:
        """Try again to record the events a failed write left pending (space may be back)."""
        now = time.monotonic()
        if not self.unrecorded or (not force and now - self._retried < RETRY_EVERY):
            return
        self._retried = now
        for rd, event in list(self.unrecorded.items()):
            now_there = load_run(rd).summary
            if now_there.status in ev.TERMINAL and not is_dead_worker_error(now_there.error):
                self.unrecorded.pop(rd, None)  # its worker recorded an end after all
            elif not self._mark(rd, event, announce=False) and self.disk_full is not None:
                break  # still full: the rest can wait for the next try

    def _stop_for(self, exc: DiskFull) -> None:
        if self.disk_full is None:
            log.info("%s; no new runs start, the grid stops once its running ones end", exc)
        self.disk_full = exc

    def _ask_to_stop(self, s: Slot, reason: str) -> None:
        """Write the run's cancel request; where it can't be written (a full disk), SIGTERM does the same."""
        try:
            s.run.request_cancel(reason)
        except (OSError, StoreError) as exc:
            log.info("%s: could not write its cancel request (%s); terminating it", s.run.run_id, exc)
            if s.handle is not None:
                try:
                    s.handle.terminate()
                except ProcessLookupError:
                    pass

    def _stop_all(self, active: list[Slot]) -> None:
        self.interrupted = True
        for s in active:
            self._ask_to_stop(s, "grid interrupted")
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
            if s.claim is not None:
                s.claim.stop()


def make_launcher(grid: GridConfig) -> Launcher:
    """The grid's executor: workers forked on this machine (``local``), or a Ray cluster's (``ray``)."""
    if grid.executor == "ray":
        from engine.ray_launcher import RayLauncher

        return RayLauncher(grid.ray_address, store=grid.ray_store)
    return default_launcher()


# --- detached start ----------------------------------------------------------


def start_detached(grid: GridConfig, root: str | Path) -> Path:
    """Prepare the grid and start its orchestrator in a new session (outlives this process)."""
    gdir = prepare(grid, root)
    return _spawn(GridDir(gdir))


def resume_detached(root: str | Path, grid_name: str) -> Path:
    gdir = RunStore(root).find_grid(grid_name)
    validate(gdir.config(), root)
    return _spawn(gdir)


def clear_stale_cancels(gdir: GridDir) -> None:
    """A grid starting (again) drops the cancel requests of its last time: the grid's, and those of runs
    no live worker holds (a live one, about to be adopted, keeps any cancel just sent to it). Done under
    the grid lock by whoever took it, so a cancel sent once the start returned is never lost."""
    gdir.clear_cancel()
    for rd in gdir.run_dirs():
        if not rd.alive():
            rd.clear_cancel()


def _spawn(gdir: GridDir) -> Path:
    """Take the grid lock here, then hand it to a new orchestrator: the check and the hold are one step."""
    lock = gdir.lock()
    if not lock.acquire():
        raise GridBusy(f"grid {gdir.name!r} is already running")
    try:
        clear_stale_cancels(gdir)
        fd = lock.fileno()
        with open(gdir.orchestrator_log, "ab") as logf:
            subprocess.Popen(
                [sys.executable, "-m", "engine.orchestrator", str(gdir.path), "--lock-fd", str(fd)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=project_env(), start_new_session=True,
                pass_fds=(fd,),
            )
    except BaseException:
        lock.release()
        raise
    lock.hand_over()  # the orchestrator holds it now; from here on the grid reads as running
    return gdir.path


def _batch_size(rd: RunDir) -> int | None:
    try:
        return rd.config().data.batch_size
    except StoreError:
        return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.orchestrator", description="drive a prepared grid")
    parser.add_argument("grid_dir")
    parser.add_argument("--lock-fd", type=int, help="the grid lock, already held (a detached start passes it)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gdir = Path(args.grid_dir)
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    lock = FileLock.adopt(GridDir(gdir).lock_file, args.lock_fd) if args.lock_fd is not None else None
    try:
        counts = Orchestrator(gdir, lock=lock).run()
    except GridBusy as exc:
        log.error("%s", exc)
        return 3
    except UserError as exc:  # a full disk, an unreadable grid: one line in the log
        log.error("grid %s stopped: %s", gdir.name, exc)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if lock is not None:
            lock.release()
    log.info("grid %s finished: %s", gdir.name, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
