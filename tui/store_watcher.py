"""Poll a run store and keep an up-to-date picture of every grid and run.

No Textual here: the app runs :meth:`StoreWatcher.poll` in a thread worker and
posts what it returns. Every file name and path comes from ``engine.store``
(``RunDir``, ``GridDir``). Each poll costs a few ``stat`` calls per run; only
files that changed are read, and the event stream is tailed from the byte
offset reached last time (``RunDir.events(offset)``), never re-read.

First load of a run uses ``engine.store.load_run`` (the fast path through the
stored summary). A run that is not finished is then rebuilt from its whole
event stream, so the offset we tail from matches the summary exactly. A run
that says ``running`` without a live worker is failed by the store's own rule
(``engine.store.settle``), which also names a full disk.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine import events as ev
from engine.store import (
    GridDir,
    RunDir,
    RunStore,
    RunSummary,
    StoreError,
    fold_batch,
    is_dead_worker_error,
    is_locked,
    load_run,
    settle,
    settle_finished,
)

Signature = tuple[int, int, int] | None  # (inode, size, mtime_ns) of a file, None when missing
EXPORT_EVERY = 4  # look for new export results on every 4th poll only (about once a second)


def file_signature(path: str | Path) -> Signature:
    """Cheap change detector for one file; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class ExportInfo:
    """The few export figures the runs table and compare screen show (``export/summary.json``)."""

    status: str = ""  # "ok", "parity_failed", "failed"
    error: str = ""
    onnx_accuracy: float | None = None
    onnx_f1_macro: float | None = None
    cpu_b1_p50_ms: float | None = None  # CPU provider, batch 1, median latency
    size_mb: float | None = None
    problem: str = ""  # non-empty when the file is unreadable

    @classmethod
    def from_dict(cls, obj: dict) -> "ExportInfo":
        latency = obj.get("latency") or {}
        cpu = latency.get("CPUExecutionProvider") or latency.get("cpu") or {}
        b1 = cpu.get("1") or cpu.get(1) or {}
        return cls(
            status=str(obj.get("status", "")),
            error=str(obj.get("error", "") or ""),
            onnx_accuracy=_num(obj.get("onnx_accuracy")),
            onnx_f1_macro=_num(obj.get("onnx_f1_macro")),
            cpu_b1_p50_ms=_num(b1.get("p50_ms")) if isinstance(b1, dict) else None,
            size_mb=_num(obj.get("size_mb")),
        )


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_export(run_dir: Path | RunDir) -> ExportInfo | None:
    """Export figures of a run, None when it has not been exported yet."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    try:
        obj = rd.export.summary()
    except StoreError as exc:
        return ExportInfo(status="unreadable", problem=str(exc))
    return ExportInfo.from_dict(obj) if obj is not None else None


@dataclass(frozen=True)
class RunState:
    """One run as the UI sees it; a private copy that is never changed after it is published."""

    key: str  # "<grid>/<run_id>": run ids repeat across grids
    path: Path
    summary: RunSummary
    problem: str = ""  # non-empty = unreadable, with the reason
    alive: bool = False  # a worker holds run.lock right now
    export: ExportInfo | None = None
    cancel_requested: bool = False  # a cancel file waits for the worker (or orchestrator) to act on it

    @property
    def dir(self) -> RunDir:
        """The run folder (engine.store): its files and readers."""
        return RunDir(self.path)

    @property
    def cancellable(self) -> bool:
        """Running or queued: a cancel request means something."""
        return self.status in ("running", "queued")

    @property
    def status(self) -> str:
        """The status to show: a queued run whose worker already holds its lock is running."""
        if self.problem:
            return "unreadable"
        if self.summary.status == "queued" and self.alive:
            return "running"
        return self.summary.status


@dataclass(frozen=True)
class GridState:
    """One grid folder: its config, whether an orchestrator drives it, whether cancel was asked."""

    name: str
    path: Path
    running: bool = False  # grid.lock is held by a live orchestrator
    cancel_requested: bool = False
    created: str = ""
    config: dict = field(default_factory=dict)
    problem: str = ""


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything the UI shows about a store at one moment; supersedes every older snapshot."""

    root: Path
    grids: dict[str, GridState]
    runs: dict[str, RunState]  # in grid order, then the grid's run order
    version: int
    scanned_at: float
    problem: str = ""  # e.g. the root is missing


def copy_summary(summary: RunSummary) -> RunSummary:
    """A copy safe to hand to another thread (fold mutates summaries and their lists in place)."""
    return dataclasses.replace(
        summary, val_acc_history=list(summary.val_acc_history), val_loss_history=list(summary.val_loss_history),
        epoch_seconds=list(summary.epoch_seconds),
    )


class RunTracker:
    """Follows one run folder: first load, then incremental tailing of its event stream."""

    def __init__(self, path: Path, grid: str):
        self.path = path
        self.grid = grid
        self.key = f"{grid}/{path.name}"
        self.dir = RunDir(path)
        # the store's paths, turned into plain strings once: polls stat these hundreds of times a
        # second, and pathlib would dominate the cost
        self._events = str(self.dir.events_file)
        self._config = str(self.dir.config_file)
        self._lock = str(self.dir.lock_file)
        self._cancel = str(self.dir.cancel_file)
        self._export = str(self.dir.export.summary_file)
        self.summary = RunSummary(run_id=path.name, grid=grid, status="unreadable")
        self.problem = ""
        self.offset = 0
        self.events_sig: Signature = None
        self.config_sig: Signature = None
        self.export_sig: Signature = None
        self.export: ExportInfo | None = None
        self.alive = False
        self.cancel = False
        self.state: RunState | None = None
        self.load()

    # -- loading ----------------------------------------------------------------

    def load(self) -> None:
        """(Re)load the run from scratch; a run that can't be read shows why, and never stops the others."""
        try:
            self._load()
        except Exception as exc:  # noqa: BLE001 - one run's reader bug must not hide the store
            self.problem = f"can't read this run ({type(exc).__name__}: {exc}); other runs are not affected"
            self.summary = RunSummary(run_id=self.path.name, grid=self.grid, status="unreadable", error=self.problem)
            self.alive = self.cancel = False

    def _load(self) -> None:
        self.config_sig = file_signature(self._config)
        self.events_sig = file_signature(self._events)
        size = self.events_sig[1] if self.events_sig else 0
        record = load_run(self.dir, self.grid)
        self.problem = record.problem
        self.summary = record.summary
        self.offset = size
        if not self.problem and self.summary.status not in ev.TERMINAL:
            # summary.json lags the event stream (progress events are not folded into it):
            # rebuild from the events so the tail offset and the summary agree exactly
            base = record.summary
            self.summary = RunSummary(
                run_id=base.run_id, grid=self.grid, dataset=base.dataset, backbone=base.backbone,
                strategy=base.strategy, epochs=base.epochs, events_missing=base.events_missing,
            )
            self.offset = 0
            self._tail()
        self.alive = self.summary.status in ("running", "queued") and is_locked(self._lock)
        # a queued run of a grid nothing drives, on a full disk, says so (the grid stopped for lack of space)
        grid_running = is_locked(GridDir(self.path.parent).lock_file) if self.summary.status == "queued" else None
        settle(self.summary, self.alive, self.path, grid_running)
        self.cancel = self.summary.status in ("running", "queued") and os.path.exists(self._cancel)
        self._check_export()

    # -- polling ------------------------------------------------------------------

    def _visible(self) -> tuple:
        s = self.summary
        return (s.updated_at, s.status, self.problem, self.alive, self.export, self.cancel, s.unreadable_events,
                s.newer_events, len(s.warnings), s.results_missing)

    def poll(self, slow: bool = True) -> bool:
        """Bring the run up to date; True when anything visible changed.

        A readable run costs one ``stat`` (events.jsonl), plus a lock check while it is
        live; ``slow`` polls also look for an export of a finished run.
        """
        before = self._visible()
        if self.problem:  # unreadable: wait for its config (or its events) to be (re)written
            if (file_signature(self._config), file_signature(self._events)) != (self.config_sig, self.events_sig):
                self.load()
            return before != self._visible()
        try:
            self._poll(slow)
        except Exception:  # noqa: BLE001 - reload, which says what is wrong with this run
            self.load()
        return before != self._visible()

    def _poll(self, slow: bool) -> None:
        events_sig = file_signature(self._events)
        if events_sig != self.events_sig:
            if events_sig is None or (self.events_sig and events_sig[0] != self.events_sig[0]) or events_sig[1] < self.offset:
                self.load()  # replaced or truncated: start over
            else:
                self.events_sig = events_sig
                self._tail()
        if self.summary.status in ("running", "queued") or self.alive:
            self.alive = is_locked(self._lock)
            if not self.alive and self.summary.status == "running":
                self._tail()  # the worker may have written its last event just before it let go
                settle(self.summary, self.alive, self.path)
        live = self.summary.status in ("running", "queued")
        self.cancel = live and os.path.exists(self._cancel)
        if slow:
            settle_finished(self.summary, self.dir)  # a done run's results.json or best.safetensors deleted since
        if self.summary.status == "done" and slow:
            self._check_export()

    def _tail(self) -> None:
        self.offset = fold_batch(self.summary, self.dir.scan_events(self.offset)).events_offset
        if self.summary.status == "running" and is_dead_worker_error(self.summary.error):
            # events after the store ruled the worker dead (it was only slow to take its lock): alive after all
            self.summary.error = self.summary.error_kind = ""

    def _check_export(self) -> None:
        sig = file_signature(self._export)
        if sig != self.export_sig:
            self.export_sig = sig
            self.export = read_export(self.dir) if sig else None

    def publish(self) -> RunState:
        """The current state as an immutable value (reused while nothing changes)."""
        self.state = RunState(
            key=self.key, path=self.path, summary=copy_summary(self.summary), problem=self.problem,
            alive=self.alive, export=self.export, cancel_requested=self.cancel,
        )
        return self.state


class StoreWatcher:
    """Incremental view of a whole run store (or of one grid)."""

    def __init__(self, root: str | Path, grid: str | None = None, clock: Callable[[], float] = time.time):
        self.store = RunStore(root)
        self.root = self.store.root
        self.only_grid = grid
        self.clock = clock
        self.version = 0
        self.polls = 0
        self._root_sig: Signature = None
        self._candidates: dict[str, GridDir] = {}  # sub-folders of the root; a grid once it has its grid file
        self._grid_list: list[str] = []
        self._grid_sigs: dict[str, tuple[Signature, Signature]] = {}
        self._grids: dict[str, GridState] = {}
        self._run_dirs: dict[str, list[Path]] = {}
        self._trackers: dict[str, RunTracker] = {}
        self._snapshot: StoreSnapshot | None = None
        self._deadline = float("inf")
        self._loaded = 0  # runs loaded by the current poll
        self.pending = False  # some runs are not loaded yet (a poll ran out of its time budget)

    @property
    def snapshot(self) -> StoreSnapshot | None:
        return self._snapshot

    def poll(self, budget: float | None = None) -> StoreSnapshot | None:
        """Scan for changes; a new snapshot when anything changed, else None.

        With a ``budget`` (seconds), loading new runs stops once it is spent and the
        snapshot holds the runs loaded so far (``pending`` is then True): a large store
        shows its first rows at once and fills in over the next polls.
        """
        changed = self._snapshot is None
        self.polls += 1
        self._deadline = time.monotonic() + budget if budget is not None else float("inf")
        self._loaded = 0
        self.pending = False
        problem = ""
        root_sig = file_signature(self.root)
        if root_sig is None:
            problem = f"run store {self.root} does not exist yet"
        elif not self.root.is_dir():
            problem = f"run store {self.root} is a file, not a folder; open the TUI with --runs on a folder"
        if root_sig != self._root_sig:
            self._root_sig = root_sig
            try:
                names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            except OSError:
                names = []
            if self.only_grid:
                names = [g for g in names if g == self.only_grid]
            # existing folders, taken as they are (RunStore.grid would refuse a name no grid can be given)
            self._candidates = {g: self._candidates.get(g) or GridDir(self.root / g) for g in names}
        # a grid folder may get its grid file after the folder itself: look for it on every poll
        grids = [g for g, gd in self._candidates.items() if gd.listed()]
        if grids != self._grid_list:
            self._grid_list = grids
            changed = True
        for grid in self._grid_list:
            changed |= self._poll_grid(grid)
        for gone in set(self._grids) - set(self._grid_list):
            self._drop_grid(gone)
            changed = True
        if self._snapshot is not None and problem != self._snapshot.problem:
            changed = True
        if not changed:
            return None
        self.version += 1
        runs = {}
        for grid in self._grid_list:
            for run_dir in self._run_dirs.get(grid, []):
                tracker = self._trackers.get(f"{grid}/{run_dir.name}")
                if tracker is not None:
                    runs[tracker.key] = tracker.state or tracker.publish()
        self._snapshot = StoreSnapshot(
            root=self.root, grids={g: self._grids[g] for g in self._grid_list}, runs=runs,
            version=self.version, scanned_at=self.clock(), problem=problem,
        )
        return self._snapshot

    def _poll_grid(self, grid: str) -> bool:
        gd = self._candidates[grid]
        changed = False
        sigs = (file_signature(gd.path), file_signature(gd.info_file))
        if sigs != self._grid_sigs.get(grid):
            self._grid_sigs[grid] = sigs
            dirs = [rd.path for rd in gd.run_dirs()]
            old = self._run_dirs.get(grid, [])
            if dirs != old:
                self._run_dirs[grid] = dirs
                keep = {f"{grid}/{d.name}" for d in dirs}
                for d in old:
                    key = f"{grid}/{d.name}"
                    if key not in keep:
                        self._trackers.pop(key, None)
                changed = True
            info = self._read_grid(gd)
            if info != self._grids.get(grid):
                changed = True
            self._grids[grid] = info
        state = self._grids[grid]
        live = (gd.running(), gd.cancel_file.exists())
        if live != (state.running, state.cancel_requested):
            self._grids[grid] = dataclasses.replace(state, running=live[0], cancel_requested=live[1])
            changed = True
            if state.running != live[0]:  # its orchestrator ended (queued runs may never start now) or began
                for run_dir in self._run_dirs.get(grid, []):
                    tracker = self._trackers.get(f"{grid}/{run_dir.name}")
                    if tracker is not None and tracker.summary.status == "queued" and (
                            state.running or tracker.summary.stalled):
                        tracker.load()
                        tracker.publish()
        for run_dir in self._run_dirs.get(grid, []):
            key = f"{grid}/{run_dir.name}"
            tracker = self._trackers.get(key)
            if tracker is None:
                if self._loaded and time.monotonic() > self._deadline:  # at least one run per poll
                    self.pending = True
                    continue
                self._loaded += 1
                self._trackers[key] = tracker = RunTracker(run_dir, grid)
                tracker.publish()
                changed = True
            elif tracker.poll(slow=self.polls % EXPORT_EVERY == 0):
                tracker.publish()
                changed = True
        return changed

    @staticmethod
    def _read_grid(gd: GridDir) -> GridState:
        try:
            info = gd.info()
        except StoreError as exc:
            return GridState(name=gd.name, path=gd.path, problem=str(exc))
        config = info.get("config") if isinstance(info.get("config"), dict) else {}
        return GridState(name=gd.name, path=gd.path, created=str(info.get("created", "")), config=config)

    def _drop_grid(self, grid: str) -> None:
        self._grids.pop(grid, None)
        self._grid_sigs.pop(grid, None)
        for d in self._run_dirs.pop(grid, []):
            self._trackers.pop(f"{grid}/{d.name}", None)
