"""Read one grid's runs from the run store into plain data the report works on.

Nothing here raises on a missing or broken file: each run carries the list of
what could not be read (``RunData.problems``) so the report can say what is
missing instead of failing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from engine import events as ev
from engine.errors import StoreError
from engine.model_meta import ModelMeta, ModelMetaError
from engine.store import GridDir, RunDir, RunSummary, load_run

if TYPE_CHECKING:
    from engine.config import RunConfig

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """One run as the report sees it; any field may be missing on an unfinished run."""

    run_id: str
    path: Path
    status: str
    dataset: str
    backbone: str
    strategy: str
    error: str = ""
    summary: RunSummary | None = None  # the store's fold of its events: best epoch, its val acc/loss
    config: "RunConfig | None" = None  # the run's resolved config
    meta: ModelMeta | None = None  # the best checkpoint's metadata (model input size, classes)
    metrics: pd.DataFrame | None = None  # one row per epoch
    results: dict | None = None  # test results
    probs: np.ndarray | None = None  # test probabilities: (N, C) softmax
    labels: np.ndarray | None = None  # (N,) true labels
    preds: np.ndarray | None = None  # (N,) predicted labels
    source_index: np.ndarray | None = None  # (N,) position in the source dataset
    export: dict | None = None  # the export summary (docs/CONTRACTS.md)
    lr_find: dict | None = None  # lr_find.json: the LR range test's curve, when the run chose its LR by one
    initial_norms: dict = field(default_factory=dict)  # group -> L2 norm before training
    groups: list = field(default_factory=list)  # layer groups, stem -> head
    device: str = ""
    device_name: str = ""
    versions: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what could not be read, one line each

    @property
    def dir(self) -> RunDir:
        return RunDir(self.path)

    @property
    def done(self) -> bool:
        """Finished with test results: the run can be scored."""
        return self.results is not None

    @property
    def checkpoint(self) -> Path:
        return self.dir.best

    @property
    def label(self) -> str:
        return f"{self.backbone} / {self.strategy}"

    @property
    def classes(self) -> list[str]:
        if self.results and self.results.get("classes"):
            return list(self.results["classes"])
        if self.probs is not None:
            return [str(i) for i in range(self.probs.shape[1])]
        return []

    @property
    def image_size(self) -> int | None:
        """The model's input side, from its checkpoint's metadata (None without a checkpoint)."""
        return self.meta.image_size if self.meta is not None else None


@dataclass
class GridData:
    """A grid folder and its runs, in the grid's own order."""

    name: str
    path: Path
    info: dict  # the grid's info (empty when missing)
    runs: list[RunData]
    problems: list[str] = field(default_factory=list)  # grid-level gaps

    @property
    def dir(self) -> GridDir:
        return GridDir(self.path)

    @property
    def datasets(self) -> list[str]:
        return _unique(r.dataset for r in self.runs)

    def runs_for(self, dataset: str) -> list[RunData]:
        return [r for r in self.runs if r.dataset == dataset]


def _unique(items) -> list:
    out: list = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def load_grid(grid_dir: str | Path | GridDir) -> GridData:
    """Read every run folder of a grid; runs the grid lists but that have no folder are kept as ``missing``."""
    gdir = grid_dir if isinstance(grid_dir, GridDir) else GridDir(grid_dir)
    problems: list[str] = []
    try:
        info = gdir.info()
    except StoreError as exc:
        info = {}
        problems.append(str(exc))
    runs = [load_run_data(rd, gdir.name) for rd in gdir.run_dirs() if rd.is_run()]
    present = {r.run_id for r in runs}
    for run_id in info.get("runs", []):
        if run_id not in present:
            runs.append(_missing_run(gdir.run(run_id).path))
    return GridData(name=info.get("name", gdir.name), path=gdir.path, info=info, runs=runs, problems=problems)


def _missing_run(path: Path) -> RunData:
    parts = path.name.split("__")
    dataset, backbone, strategy = (parts + ["?", "?", "?"])[:3]
    return RunData(run_id=path.name, path=path, status="missing", dataset=dataset, backbone=backbone,
                   strategy=strategy, error="run folder not created yet (grid not started or still queued)",
                   problems=["run folder missing"])


def load_run_data(run_dir: str | Path | RunDir, grid: str = "") -> RunData:
    """Everything the report needs about one run, through the store's readers; what can't be read is
    listed in ``problems``."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    record = load_run(rd, grid)
    s = record.summary
    # an unreadable config names no dataset: the run id's own parts do (dataset__backbone__strategy[__axes])
    named = (rd.run_id.split("__") + ["?", "?", "?"])[:3]
    run = RunData(run_id=rd.run_id, path=rd.path, status=s.status, dataset=s.dataset or named[0],
                  backbone=s.backbone or named[1], strategy=s.strategy or named[2], error=s.error or record.problem,
                  summary=s)
    if record.problem:
        run.problems.append(record.problem)
        return run
    run.problems.extend(s.notes)  # skipped or lost events, a refused checkpoint (engine.store RunSummary.notes)
    run.config = _read(run, rd.config)
    _read_started(run)
    run.metrics = _read(run, rd.metrics)
    run.results = _read(run, rd.results)  # a done run's missing file is in its notes, with what to do
    if rd.has_checkpoint():
        run.meta = _read(run, rd.checkpoint_meta)
    probs = _read(run, rd.probs)
    if probs is not None:
        run.probs, run.labels, run.preds, run.source_index = probs.probs, probs.labels, probs.preds, probs.index
    elif run.results is not None and not rd.probs_file.exists():
        run.problems.append(f"{rd.probs_file} is missing (calibration needs it)")
    run.export = _read(run, rd.export.summary)
    run.lr_find = _read(run, rd.lr_find)
    if run.done and run.status != "done":
        # results exist, so the run finished even if its summary says otherwise
        run.status = "done"
    return run


def _read(run: RunData, reader):
    """``reader()``, or None with its one-line problem noted on the run."""
    try:
        return reader()
    except (StoreError, ModelMetaError) as exc:
        run.problems.append(str(exc))
        return None


def _read_started(run: RunData) -> None:
    events, _ = run.dir.events()
    for event in events:
        if isinstance(event, ev.Started):
            if event.initial_norms and not run.initial_norms:
                run.initial_norms = dict(event.initial_norms)  # the first start: before any training
            run.groups = list(event.groups) or run.groups
            run.device, run.device_name = event.device, event.device_name
            run.versions = dict(event.versions)


def norm_columns(metrics: pd.DataFrame) -> list[str]:
    """The ``norm:<group>`` columns of a metrics table, in file order (stem -> head)."""
    return [c for c in metrics.columns if c.startswith("norm:")]
