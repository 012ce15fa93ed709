"""One grid folder: its file names, grid.json, its run folders, liveness, cancel.

``<root>/<grid>/``::

    grid.json          {"name", "config": GridConfig dict, "runs": [run ids], "created"}
    grid.lock          flock held while an orchestrator drives the grid
    orchestrator.log   the orchestrator's log (detached grids)
    cancel             present = cancel the whole grid
    exports.csv        one row per exported run;  export.log / report.log: TUI-started children
    search.json        a [search] grid's studies: trials, their states and values, the best (engine.search)
    report/            the grid's report
    sync.json          what `finetune-tui sync` already sent to each tracker (sync.state)
    <run>/             one folder per run (RunDir)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from engine.errors import StoreError
from engine.store.atomic import MissingFile, atomic_write_json, read_json_object
from engine.store.folder import ControlledFolder
from engine.store.run_dir import RunDir
from engine.store.study_dir import StudyDir

if TYPE_CHECKING:
    from engine.config import GridConfig


class GridDir(ControlledFolder):
    CANCEL_REASON = "grid cancelled by user"
    INFO, LOCK, CANCEL, LOG = "grid.json", "grid.lock", "cancel", "orchestrator.log"
    EXPORTS, EXPORT_LOG, REPORT_LOG, REPORT = "exports.csv", "export.log", "report.log", "report"
    SEARCH = "search.json"
    SYNC_STATE = "sync.json"

    info_file = property(lambda self: self.path / self.INFO)
    lock_file = property(lambda self: self.path / self.LOCK)
    cancel_file = property(lambda self: self.path / self.CANCEL)
    orchestrator_log = property(lambda self: self.path / self.LOG)
    exports_csv = property(lambda self: self.path / self.EXPORTS)
    export_log = property(lambda self: self.path / self.EXPORT_LOG)
    report_log = property(lambda self: self.path / self.REPORT_LOG)
    report_dir = property(lambda self: self.path / self.REPORT)
    search_file = property(lambda self: self.path / self.SEARCH)
    sync_state_file = property(lambda self: self.path / self.SYNC_STATE)

    def exists(self) -> bool:
        return self.info_file.is_file()

    def orphaned(self) -> bool:
        """No grid.json, but run folders: a grid whose file went (deleted, or a copy that left it out).
        Listed with its runs, so they are not lost from sight; it can't be resumed without the file."""
        if self.exists() or self.name.startswith((".", "_")) or StudyDir(self.path).exists():
            return False  # a grid, the dataset cache, the trackers' folders, a study: no need to look inside
        try:
            return any(RunDir(p).is_run() for p in self.path.iterdir() if p.is_dir())
        except OSError:
            return False

    def listed(self) -> bool:
        """A grid to show: one with its grid.json, or an orphaned one (``orphaned``)."""
        return self.exists() or self.orphaned()

    def run(self, run_id: str) -> RunDir:
        return RunDir(self.path / run_id)

    # --- grid.json ---------------------------------------------------------------

    def info(self) -> dict:
        try:
            return read_json_object(self.info_file)
        except MissingFile:
            problem = self.orphan_problem()
            if problem:
                raise MissingFile(problem) from None
            raise

    def orphan_problem(self) -> str:
        """What an orphaned grid (``orphaned``) lacks and how to mend it; '' for any other folder."""
        if not self.orphaned():
            return ""
        return (f"{self.info_file} is missing: its runs are shown, but the grid can't be resumed without it; run "
                "the grid's command again (same settings and --name) to write it")

    def config(self) -> "GridConfig":
        """The grid's config as stored; StoreError naming grid.json when it can't be read."""
        from engine.config import ConfigError, GridConfig

        info = self.info()
        try:
            return GridConfig.from_dict(info["config"], str(self.info_file), stored=True)
        except KeyError:
            raise StoreError(f"{self.info_file} lacks its config") from None
        except ConfigError as exc:
            raise StoreError(str(exc)) from None

    def search(self) -> dict | None:
        """search.json (engine.search): None for a grid without [search] or before its first trial ended."""
        try:
            return read_json_object(self.search_file)
        except MissingFile:
            return None

    def run_ids(self) -> list[str]:
        try:
            ids = self.info().get("runs", [])
        except StoreError:
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

    def write_info(self, grid: "GridConfig", run_ids: list[str]) -> None:
        atomic_write_json(self.info_file, {"name": grid.name, "config": grid.to_dict(), "runs": run_ids,
                                           "created": time.time()})

    def run_dirs(self) -> list[RunDir]:
        """The grid's run folders: those grid.json lists, in its order, then any other run folder."""
        ids = self.run_ids()
        try:
            subdirs = [p for p in self.path.iterdir() if p.is_dir()]
        except OSError:
            return []
        found = {p.name for p in subdirs if p.name in ids or RunDir(p).is_run()}
        ordered = [i for i in ids if i in found] + sorted(found - set(ids))
        return [RunDir(self.path / i) for i in ordered]
