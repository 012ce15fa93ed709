"""One study folder: a feature-extractor study's file names, config, progress, liveness and cancel.

``<root>/<study>/`` (a study sits in the store next to the grids; its name is never a grid's)::

    study.json          {"name", "config": StudyConfig dict, "created"}
    study.lock          flock held while the study's process lives
    cancel              present = stop the study
    study.log           the detached process's log
    status.json         progress and outcome (StudyStatus)
    cells/<cell>.json   one dataset x extractor: its scores, or why it was skipped; resuming skips it
    points/<cell>.npz   the dataset sample's 2-D PCA and t-SNE coordinates under that extractor
    samples/<ds>.npz    test positions of the dataset's sample: the same points in every panel
    models/<cell>.safetensors   a trained from-scratch baseline (kept, so a resumed study doesn't retrain)
    metrics.csv         every cell, one row each
    points_<ds>.csv     every panel's coordinates, long format
    pca_<ds>.png  tsne_<ds>.png  before_after_<ds>__<extractor>.png  metrics_<ds>.png

``<cell>`` is ``<dataset key>__<extractor key>`` (``cell_key``). Readers never import torch.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from engine.errors import StoreError
from engine.store.atomic import MissingFile, atomic_write, atomic_write_json, read_json_object
from engine.store.folder import ControlledFolder

if TYPE_CHECKING:
    import pandas as pd

    from engine.config import StudyConfig

STUDY_STATUSES = ("queued", "running", "done", "failed", "cancelled")
DEAD_STUDY = "the study's process stopped without finishing (killed or crashed); run it again to resume it"


def file_key(text: str) -> str:
    """A folder-safe key for a dataset or extractor name (``run:g/r`` -> ``run-g-r``)."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.replace("imagefolder:", "if-"))
    return re.sub(r"-{2,}", "-", key).strip("-.") or "x"


def cell_key(dataset: str, extractor: str) -> str:
    return f"{file_key(dataset)}__{file_key(extractor)}"


@dataclass
class StudyStatus:
    """status.json: where a study is and how it ended."""

    status: str = "queued"  # STUDY_STATUSES
    stage: str = ""  # what it does now, in words ("extracting", "t-SNE", ...)
    done: int = 0  # cells finished (scored or skipped)
    total: int = 0  # cells in all
    current: str = ""  # the cell being worked on ("fashion_mnist / efficientnet_lite0")
    step: int = 0  # progress within the current stage
    steps: int = 0
    message: str = ""  # the latest line for people
    error: str = ""
    pid: int = 0
    started: float = 0.0
    updated: float = 0.0
    finished: float = 0.0
    notes: list = field(default_factory=list)  # one line per skipped extractor, per figure that failed, ...

    @classmethod
    def from_dict(cls, obj: dict) -> "StudyStatus":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


class StudyDir(ControlledFolder):
    """A study folder; cheap to make (no I/O until a method is called)."""

    CANCEL_REASON = "study cancelled by user"
    INFO, LOCK, CANCEL, LOG, STATUS, METRICS = "study.json", "study.lock", "cancel", "study.log", "status.json", \
        "metrics.csv"
    CELLS, POINTS, SAMPLES, MODELS = "cells", "points", "samples", "models"

    info_file = property(lambda self: self.path / self.INFO)
    lock_file = property(lambda self: self.path / self.LOCK)
    cancel_file = property(lambda self: self.path / self.CANCEL)
    log_file = property(lambda self: self.path / self.LOG)
    status_file = property(lambda self: self.path / self.STATUS)
    metrics_csv = property(lambda self: self.path / self.METRICS)

    def exists(self) -> bool:
        return self.info_file.is_file()

    # --- per-cell and per-dataset files ---------------------------------------------

    def cell_file(self, cell: str) -> Path:
        return self.path / self.CELLS / f"{cell}.json"

    def points_file(self, cell: str) -> Path:
        return self.path / self.POINTS / f"{cell}.npz"

    def sample_file(self, dataset: str) -> Path:
        return self.path / self.SAMPLES / f"{file_key(dataset)}.npz"

    def model_file(self, cell: str) -> Path:
        return self.path / self.MODELS / f"{cell}.safetensors"

    def points_csv(self, dataset: str) -> Path:
        return self.path / f"points_{file_key(dataset)}.csv"

    def projection_png(self, method: str, dataset: str) -> Path:
        """``pca_<ds>.png`` or ``tsne_<ds>.png``."""
        return self.path / f"{method}_{file_key(dataset)}.png"

    def before_after_png(self, dataset: str, extractor: str) -> Path:
        return self.path / f"before_after_{cell_key(dataset, extractor)}.png"

    def metrics_png(self, dataset: str) -> Path:
        return self.path / f"metrics_{file_key(dataset)}.png"

    def figures(self) -> list[Path]:
        """Every PNG the study drew, by name."""
        try:
            return sorted(p for p in self.path.glob("*.png") if p.is_file())
        except OSError:
            return []

    # --- study.json ------------------------------------------------------------------

    def info(self) -> dict:
        return read_json_object(self.info_file)

    def config(self) -> "StudyConfig":
        """The study's config as stored; StoreError naming study.json when it can't be read."""
        from engine.config import ConfigError, StudyConfig

        info = self.info()
        try:
            return StudyConfig.from_dict(info["config"], str(self.info_file))
        except KeyError:
            raise StoreError(f"{self.info_file} lacks its config") from None
        except ConfigError as exc:
            raise StoreError(str(exc)) from None

    def write_info(self, config: "StudyConfig") -> None:
        atomic_write_json(self.info_file, {"name": config.name, "config": config.to_dict(), "created": time.time()})

    # --- progress --------------------------------------------------------------------

    def status(self) -> StudyStatus:
        """status.json, with the dead-process rule applied: "running" without a live lock is failed."""
        try:
            st = StudyStatus.from_dict(read_json_object(self.status_file))
        except MissingFile:
            st = StudyStatus()
        except (StoreError, TypeError) as exc:
            st = StudyStatus(status="failed", error=f"unreadable status: {exc}")
        if st.status == "running" and not self.running():
            st.status, st.error = "failed", st.error or DEAD_STUDY
        return st

    def write_status(self, status: StudyStatus) -> None:
        status.updated = time.time()
        atomic_write_json(self.status_file, status.to_dict())

    # --- cells -----------------------------------------------------------------------

    def cell(self, cell: str) -> dict | None:
        """A finished cell's record; None when it hasn't finished (or its file is torn)."""
        try:
            return read_json_object(self.cell_file(cell))
        except StoreError:
            return None

    def cells(self) -> list[dict]:
        """Every finished cell's record, in file-name order."""
        folder = self.path / self.CELLS
        try:
            names = sorted(p.stem for p in folder.glob("*.json"))
        except OSError:
            return []
        return [c for c in (self.cell(n) for n in names) if c is not None]

    def write_cell(self, cell: str, record: dict) -> None:
        atomic_write_json(self.cell_file(cell), record)

    def metrics(self) -> "pd.DataFrame | None":
        """metrics.csv (one row per cell); None before the study wrote it."""
        import pandas as pd

        if not self.metrics_csv.is_file():
            return None
        try:
            return pd.read_csv(self.metrics_csv)
        except (ValueError, OSError) as exc:
            raise StoreError(f"{self.metrics_csv} is unreadable ({exc})") from None

    def points(self, cell: str) -> dict | None:
        """A cell's projections: ``pca``, ``tsne`` (n, 2), ``labels`` (n,), ``index`` (n,); None when absent."""
        import numpy as np

        path = self.points_file(cell)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: np.asarray(npz[k]) for k in npz.files}
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"{path} is unreadable ({exc})") from None

    def write_npz(self, path: Path, **arrays) -> None:
        """Atomically write one of this study's .npz files (points, samples)."""
        import numpy as np

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
                np.savez_compressed(fh, **arrays)

        atomic_write(path, write)

    def write_with(self, path: Path, write: Callable[[str], None]) -> None:
        """Atomically write one of this study's files with ``write(tmp_path)`` (CSVs, figures, models)."""
        atomic_write(path, write)
