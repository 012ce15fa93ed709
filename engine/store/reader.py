"""Reading a whole store: grids by name, run records with their summaries."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StoreError
from engine.store.atomic import MissingFile
from engine.store.dataset_cache import DatasetCacheDir
from engine.store.grid_dir import GridDir
from engine.store.run_dir import RunDir
from engine.store.study_dir import StudyDir
from engine.store.summary import RunSummary, fold_batch, settle, settle_finished

DEFAULT_ROOT = "runs"


def default_root() -> Path:
    """The run store used when no --runs is given: FINETUNE_TUI_RUNS, else the settings file's ``runs``
    (``engine.settings``), else ./runs. The one place this is decided."""
    return default_root_and_source()[0]


def default_root_and_source() -> tuple[Path, str]:
    """``default_root()`` and where it came from (for ``finetune-tui settings``)."""
    from engine.settings import runs_from_settings

    root, source = runs_from_settings()
    return (root, source) if root is not None else (Path(DEFAULT_ROOT), "default")


@dataclass
class RunRecord:
    """A run as found on disk: its folder, summary, and why it is unreadable if so."""

    path: Path
    summary: RunSummary
    problem: str = ""  # non-empty = unreadable, with the reason

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def dir(self) -> RunDir:
        return RunDir(self.path)


def load_run(run_dir: str | Path | RunDir, grid: str = "") -> RunRecord:
    """Read a run folder; never raises: problems come back in ``problem``."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    grid = grid or rd.grid_name
    try:
        cfg = rd.config_dict()
        summary = RunSummary(run_id=rd.run_id, grid=grid, dataset=cfg["data"]["dataset"],
                             backbone=cfg["model"]["backbone"], strategy=cfg["train"]["strategy"],
                             epochs=cfg["train"]["epochs"], axes=dict(cfg.get("axes") or {}))
    except (StoreError, KeyError, TypeError) as exc:
        reason = str(exc) if isinstance(exc, StoreError) else f"{rd.config_file} lacks {exc}"
        return RunRecord(rd.path, RunSummary(run_id=rd.run_id, grid=grid, status="unreadable", error=reason), reason)
    try:
        stored = RunSummary.from_dict(rd.stored_summary())
    except (StoreError, TypeError):
        stored = None  # no summary yet, or torn or tampered with: rebuild it from the events
    if stored is not None and stored.run_id:
        stored.axes = stored.axes or summary.axes  # summaries written before axes existed
        summary = stored
        if summary.events_offset is not None:
            size = _size(rd.events_file)
            if size < summary.events_offset:
                summary.events_missing = True  # cut short (or replaced) after the summary was written
            elif size > summary.events_offset:  # lines the summary hasn't seen: progress, or appended by hand
                fold_batch(summary, rd.scan_events(summary.events_offset))
    else:
        fold_batch(summary, rd.scan_events())
    if summary.status == "running":
        live = rd.liveness()
        settle(summary, live.alive, rd.path, because=live.dead_because())
    elif summary.status == "queued":
        settle(summary, rd.alive(), rd.path, grid_running=GridDir(rd.path.parent).running())
    settle_finished(summary, rd)
    return RunRecord(rd.path, summary)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class RunStore:
    """A run store: a folder of grid folders, the dataset cache its runs share, and the trackers' default
    destinations (named so that no grid can take them: grid names start with a letter or digit)."""

    DATASET_CACHE = (".cache", "datasets")
    TENSORBOARD, MLFLOW, MLFLOW_DB, MLFLOW_ARTIFACTS = "_tensorboard", "_mlflow", "mlflow.db", "artifacts"

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    @property
    def dataset_cache(self) -> DatasetCacheDir:
        """The default dataset cache: ``<root>/.cache/datasets`` (``data.cache_dir`` chooses another)."""
        return DatasetCacheDir(self.root.joinpath(*self.DATASET_CACHE))

    @property
    def tensorboard_dir(self) -> Path:
        """``finetune-tui sync tensorboard``'s default log folder: <root>/_tensorboard/<grid>/<run>/."""
        return self.root / self.TENSORBOARD

    @property
    def mlflow_db(self) -> Path:
        """``finetune-tui sync mlflow``'s default tracking store (SQLite), with its artifacts beside it."""
        return self.root / self.MLFLOW / self.MLFLOW_DB

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / self.MLFLOW / self.MLFLOW_ARTIFACTS

    def _folders(self) -> list[Path]:
        """The store's sub-folders; none when it doesn't exist yet. A file where the store should be is an
        error ("no runs in FILE" read as an empty store)."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"run store {self.root} is a file, not a folder; pass --runs a folder")
        try:
            return [p for p in self.root.iterdir() if p.is_dir()]
        except OSError:
            return []

    def grids(self) -> list[str]:
        return sorted(p.name for p in self._folders() if GridDir(p).listed())

    def grid(self, name: str) -> GridDir:
        """The grid folder for ``name`` (which may not exist yet); refuses names that leave the store
        and the names of studies."""
        check_name(name, "grid")
        if StudyDir(self.root / name).exists():
            raise StoreError(f"{name!r} is a study in {self.root}, not a grid; pick another grid name")
        return GridDir(self.root / name)

    # --- studies (engine/study): folders next to the grids ---------------------------

    def studies(self) -> list[str]:
        return sorted(p.name for p in self._folders() if StudyDir(p).exists())

    def study(self, name: str) -> StudyDir:
        """The study folder for ``name`` (which may not exist yet); refuses paths and the names of grids."""
        check_name(name, "study")
        if GridDir(self.root / name).exists():
            raise StoreError(f"{name!r} is a grid in {self.root}, not a study; pick another study name")
        return StudyDir(self.root / name)

    def _existing(self, folder, what: str, plural: str, names):
        """``folder`` when it exists; else a StoreError naming the store's other ``plural``."""
        if not folder.exists():
            known = names()
            hint = f"{plural} there: {', '.join(known)}" if known else f"it has no {plural} yet"
            raise StoreError(f"no {what} {folder.name!r} in {self.root}; {hint}")
        return folder

    def find_study(self, name: str) -> StudyDir:
        """An existing study by name; StoreError listing the store's studies otherwise."""
        return self._existing(self.study(name), "study", "studies", self.studies)

    def find_grid(self, name: str) -> GridDir:
        """An existing grid by name (an orphaned one too: its runs can be listed); StoreError listing the
        store's grids otherwise."""
        gdir = self.grid(name)
        return gdir if gdir.orphaned() else self._existing(gdir, "grid", "grids", self.grids)

    def find_run(self, grid: str, run_id: str) -> RunDir:
        gdir = self.find_grid(grid)
        check_name(run_id, "run", limit=255)
        rd = gdir.run(run_id)
        if not rd.is_run():
            raise StoreError(f"no run {run_id!r} in grid {grid!r}; `finetune-tui runs --grid {grid}` lists them")
        return rd

    def locate(self, target: str) -> GridDir | RunDir:
        """A grid or run from a grid name, GRID/RUN_ID, or the path of a grid or run folder.

        A path is taken as given (from the current folder); only names are looked up in the store,
        and a name never leaves it (``../other/grid`` is no grid name).
        """
        candidates = [Path(target)]
        parts = target.split("/")
        if len(parts) <= 2 and all(p and p not in (".", "..") for p in parts):
            candidates.append(self.root.joinpath(*parts))
        for candidate in candidates:
            if GridDir(candidate).exists():
                return GridDir(candidate)
            if RunDir(candidate).is_run() or RunDir(candidate).best.is_file():
                return RunDir(candidate)
        raise StoreError(f"{target!r} is neither a run nor a grid folder, nor a grid or GRID/RUN_ID in {self.root}")

    def runs(self, grid: str | None = None) -> list[RunRecord]:
        grids = [grid] if grid else self.grids()
        return [load_run(rd, g) for g in grids for rd in self.grid(g).run_dirs()]


def dataset_cache_for(run_dir: str | Path | RunDir, cache_dir: str = "") -> DatasetCacheDir:
    """The dataset cache a run uses: ``cache_dir`` when set, else its store's (the run folder's grandparent)."""
    if cache_dir:
        return DatasetCacheDir(Path(cache_dir).expanduser())
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    return RunStore(rd.path.parent.parent).dataset_cache


def check_name(name: str, what: str, limit: int = 64) -> str:
    """A grid or run name must be a single folder name inside the store."""
    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", "..") or not name:
        raise StoreError(f"{what} name {name!r} must be a name in the run store, not a path")
    if what in ("grid", "study"):
        from engine.config import check_grid_name

        check_grid_name(name, what)
    elif len(name) > limit:
        raise StoreError(f"{what} name {name[:40]!r}... is longer than {limit} characters")
    return name


__all__ = ["DEFAULT_ROOT", "MissingFile", "RunRecord", "RunStore", "check_name", "dataset_cache_for", "default_root",
           "default_root_and_source", "load_run"]
