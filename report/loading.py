"""Read one grid's runs from the run store into plain data the report works on.

Nothing here raises on a missing or broken file: each run carries the list of
what could not be read (``RunData.problems``) so the report can say what is
missing instead of failing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine import events as ev
from engine.store import RunStore, StoreError, load_run, read_json

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
    config: dict = field(default_factory=dict)
    metrics: pd.DataFrame | None = None  # metrics.csv
    results: dict | None = None  # results.json
    probs: np.ndarray | None = None  # test_probs.npz: (N, C) softmax
    labels: np.ndarray | None = None  # (N,) true labels
    preds: np.ndarray | None = None  # (N,) predicted labels
    source_index: np.ndarray | None = None  # (N,) position in the source dataset
    export: dict | None = None  # export/summary.json
    initial_norms: dict = field(default_factory=dict)  # group -> L2 norm before training
    groups: list = field(default_factory=list)  # layer groups, stem -> head
    device: str = ""
    device_name: str = ""
    versions: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what could not be read, one line each

    @property
    def done(self) -> bool:
        """Finished with test results: the run can be scored."""
        return self.results is not None

    @property
    def checkpoint(self) -> Path:
        return self.path / "best.safetensors"

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
        size = (self.results or {}).get("image_size") or self.config.get("data", {}).get("image_size")
        return int(size) if size else None


@dataclass
class GridData:
    """A grid folder and its runs, in the grid's own order."""

    name: str
    path: Path
    info: dict  # grid.json (empty when missing)
    runs: list[RunData]
    problems: list[str] = field(default_factory=list)  # grid-level gaps

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


def load_grid(grid_dir: str | Path) -> GridData:
    """Read every run folder of a grid; runs listed in grid.json but absent are kept as ``missing``."""
    grid_dir = Path(grid_dir)
    store = RunStore(grid_dir.parent)
    problems: list[str] = []
    try:
        info = read_json(grid_dir / "grid.json")
    except StoreError as exc:
        info = {}
        problems.append(str(exc))
    runs = [load_run_data(d, grid_dir.name) for d in (rd.path for rd in store.grid(grid_dir.name).run_dirs()) if _is_run_dir(d)]
    present = {r.run_id for r in runs}
    for run_id in info.get("runs", []):
        if run_id not in present:
            runs.append(_missing_run(grid_dir / run_id))
    return GridData(name=info.get("name", grid_dir.name), path=grid_dir, info=info, runs=runs, problems=problems)


def _is_run_dir(path: Path) -> bool:
    return path.name != "report" and ((path / "config.json").exists() or (path / "events.jsonl").exists())


def _missing_run(path: Path) -> RunData:
    parts = path.name.split("__")
    dataset, backbone, strategy = (parts + ["?", "?", "?"])[:3]
    return RunData(run_id=path.name, path=path, status="missing", dataset=dataset, backbone=backbone,
                   strategy=strategy, error="run folder not created yet (grid not started or still queued)",
                   problems=["run folder missing"])


def load_run_data(run_dir: str | Path, grid: str = "") -> RunData:
    """Everything the report needs about one run; unreadable files are listed in ``problems``."""
    run_dir = Path(run_dir)
    record = load_run(run_dir, grid)
    s = record.summary
    run = RunData(run_id=run_dir.name, path=run_dir, status=s.status, dataset=s.dataset or "?",
                  backbone=s.backbone or "?", strategy=s.strategy or "?", error=s.error or record.problem)
    if record.problem:
        run.problems.append(record.problem)
        return run
    try:
        run.config = read_json(run_dir / "config.json")
    except StoreError as exc:
        run.problems.append(str(exc))
    _read_started(run)
    run.metrics = _read_metrics(run_dir / "metrics.csv", run.problems)
    if (run_dir / "results.json").exists():
        try:
            run.results = read_json(run_dir / "results.json")
        except StoreError as exc:
            run.problems.append(str(exc))
    elif s.status == "done":
        run.problems.append(f"{run_dir / 'results.json'} is missing")
    _read_probs(run)
    summary = run_dir / "export" / "summary.json"
    if summary.exists():
        try:
            run.export = read_json(summary)
        except StoreError as exc:
            run.problems.append(str(exc))
    if run.done and run.status != "done":
        # results exist, so the run finished even if its summary says otherwise
        run.status = "done"
    return run


def _read_metrics(path: Path, problems: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        problems.append(f"{path} is unreadable ({exc})")
        return None
    if "epoch" not in df.columns or df.empty:
        return None
    # a resumed run may have replayed epochs: keep the last row of each
    return df.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def _read_started(run: RunData) -> None:
    events, _ = ev.read_events(run.path / "events.jsonl")
    for event in events:
        if isinstance(event, ev.Started):
            if event.initial_norms and not run.initial_norms:
                run.initial_norms = dict(event.initial_norms)  # the first start: before any training
            run.groups = list(event.groups) or run.groups
            run.device, run.device_name = event.device, event.device_name
            run.versions = dict(event.versions)


def _read_probs(run: RunData) -> None:
    path = run.path / "test_probs.npz"
    if not path.exists():
        if run.results is not None:
            run.problems.append(f"{path} is missing (calibration needs it)")
        return
    try:
        with np.load(path, allow_pickle=False) as npz:
            run.probs = np.asarray(npz["probs"], dtype=np.float64)
            run.labels = np.asarray(npz["labels"], dtype=np.int64)
            run.preds = np.asarray(npz["preds"], dtype=np.int64) if "preds" in npz else run.probs.argmax(1)
            run.source_index = np.asarray(npz["index"], dtype=np.int64) if "index" in npz else None
    except (OSError, KeyError, ValueError) as exc:
        run.problems.append(f"{path} is unreadable ({exc})")
        run.probs = run.labels = run.preds = run.source_index = None


def norm_columns(metrics: pd.DataFrame) -> list[str]:
    """The ``norm:<group>`` columns of a metrics table, in file order (stem -> head)."""
    return [c for c in metrics.columns if c.startswith("norm:")]
