"""One run folder: every file name it holds, typed readers, atomic writers, liveness, cancel.

``<root>/<grid>/<run>/``::

    config.json       resolved RunConfig              events.jsonl   the event stream (engine.events)
    summary.json      fold of the events (fast list)   metrics.csv    one row per epoch
    best.safetensors  weights of the best epoch        last_state.pt  resume point, one file (engine.resume)
    results.json      test metrics, per class, confusion matrix, top errors
    lr_find.json      the LR range test's curve and chosen LR (train.lr = "find", engine.lr_find)
    test_probs.npz    probs, labels, preds, index over the test split
    run.lock          flock held while a worker lives  cancel         present = stop this run
    heartbeat.json    the live worker's host, pid and last beat (liveness across hosts, store/heartbeat.py)
    worker.log        the worker's stderr              traceback.txt  the traceback of a crash
    skipped_images.txt  unreadable images left out (data.on_bad_image = "skip"): one "path<TAB>reason" a line
    export/           ONNX files (model.onnx; model.preprocess.onnx, uint8 images in) and their summary
                      (ExportDir); .export.lock, .export.new/ (a re-export being written), .export.failed/ (a failed re-export that left the good one in place)

Readers never import torch: the TUI, the report and ``predict`` use them.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from engine import events as ev
from engine.errors import StoreError
from engine.store.atomic import (
    MissingFile,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    read_json_object,
)
from engine.store.folder import StoreFolder, cancel_reason_in
from engine.store.heartbeat import Heartbeat, local_host, read_heartbeat
from engine.store.locks import FileLock, is_locked

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from engine.config import RunConfig
    from engine.model_meta import ModelMeta


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _square(v) -> bool:
    return isinstance(v, list) and all(isinstance(r, list) and len(r) == len(v) and all(map(_whole, r)) for r in v)


# results.json's keys (engine.metrics.test_results and the trainer's additions), each with its check; a
# key not listed, or missing, is left to its reader
RESULTS_TYPES: dict[str, tuple[str, Callable]] = {
    **{k: ("a number", _number) for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                                          "precision_weighted", "recall_weighted", "f1_weighted", "train_seconds",
                                          "total_seconds", "cpu_seconds", "peak_rss_mb")},
    **{k: ("a whole number", _whole) for k in ("n_test", "best_epoch", "epochs_run", "image_size")},
    "classes": ("a list of names", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v)),
    "per_class": ("a table of per-class numbers", lambda v: isinstance(v, dict) and all(
        isinstance(row, dict) and all(map(_number, row.values())) for row in v.values())),
    "confusion_matrix": ("a square table of counts", _square),
    "top_errors": ("a list of tables", lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v)),
    "skipped_images": ("a list of paths", lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v)),
    "phases": ("a table of seconds", lambda v: isinstance(v, dict) and all(map(_number, v.values()))),
}


def results_misfit(obj: dict) -> str:
    """The first known key of a results.json holding the wrong type, said in words; '' when all fit."""
    for key, (what, fits) in RESULTS_TYPES.items():
        if key in obj and not fits(obj[key]):
            return f"{key} should be {what}, not {json.dumps(obj[key])[:40]}"
    matrix, classes = obj.get("confusion_matrix"), obj.get("classes")
    if isinstance(matrix, list) and isinstance(classes, list) and len(matrix) != len(classes):
        return f"confusion_matrix has {len(matrix)} rows for {len(classes)} classes"
    return ""


@dataclass(frozen=True)
class TestProbs:
    """test_probs.npz: softmax probabilities over the test split, with labels and predictions."""

    probs: "np.ndarray"  # (N, C) float
    labels: "np.ndarray"  # (N,) int
    preds: "np.ndarray"  # (N,) int
    index: "np.ndarray | None"  # (N,) position in the source dataset


class ExportDir:
    """``<run>/export/``: the ONNX files of a run and what was measured on them.

    A new export is written to a staging folder next to it and swapped in only
    once it finished, so a failed re-export never costs the previous good one
    (``export.run_export``). The lock and the staging folders are siblings of
    ``export/`` in the run folder, so a swap never moves the lock.
    """

    SUMMARY, DETAIL = "summary.json", "export.json"
    MODEL, FAILED_MODEL = "model.onnx", "model.parity_failed.onnx"
    # the deployable file: uint8 images in, preprocessing and softmax in the graph (export.embed)
    EMBEDDED, FAILED_EMBEDDED = "model.preprocess.onnx", "model.preprocess.parity_failed.onnx"
    # <run>/ siblings: the export lock; the export being written; the previous one during a swap;
    # a failed attempt kept for inspection next to a good export it did not replace
    LOCK, STAGING, RETIRED, FAILED_ATTEMPT = ".export.lock", ".export.new", ".export.old", ".export.failed"

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ExportDir({str(self.path)!r})"

    summary_file = property(lambda self: self.path / self.SUMMARY)
    detail_file = property(lambda self: self.path / self.DETAIL)
    lock_file = property(lambda self: self.path.parent / self.LOCK)
    model = property(lambda self: self.path / self.MODEL)
    failed_model = property(lambda self: self.path / self.FAILED_MODEL)
    embedded = property(lambda self: self.path / self.EMBEDDED)
    failed_embedded = property(lambda self: self.path / self.FAILED_EMBEDDED)
    trt_cache = property(lambda self: self.path / "trt_cache")
    staging = property(lambda self: ExportDir(self.path.parent / self.STAGING))
    retired = property(lambda self: ExportDir(self.path.parent / self.RETIRED))
    failed_attempt = property(lambda self: ExportDir(self.path.parent / self.FAILED_ATTEMPT))

    def variant(self, name: str) -> Path:
        """``model.<name>.onnx`` (int8, fp16, ...)."""
        return self.path / f"model.{name}.onnx"

    def summary(self) -> dict | None:
        """``summary.json`` (docs/CONTRACTS.md), None when never exported; StoreError when unreadable."""
        try:
            return read_json_object(self.summary_file)
        except MissingFile:
            return None

    def detail(self) -> dict | None:
        """``export.json``: everything measured, with provenance; None when absent."""
        try:
            return read_json_object(self.detail_file)
        except MissingFile:
            return None

    def lock(self) -> FileLock:
        return FileLock(self.lock_file)


class RunDir(StoreFolder):
    """A run folder; cheap to make (no I/O until a method is called)."""

    CONFIG, EVENTS, SUMMARY, METRICS = "config.json", "events.jsonl", "summary.json", "metrics.csv"
    BEST, LAST, STATE = "best.safetensors", "last.safetensors", "last_state.pt"  # LAST: older versions' only
    RESULTS, PROBS, LR_FIND = "results.json", "test_probs.npz", "lr_find.json"
    LOCK, CANCEL, WORKER_LOG, TRACEBACK = "run.lock", "cancel", "worker.log", "traceback.txt"
    SKIPPED, HEARTBEAT = "skipped_images.txt", "heartbeat.json"


    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def grid_name(self) -> str:
        return self.path.parent.name

    config_file = property(lambda self: self.path / self.CONFIG)
    events_file = property(lambda self: self.path / self.EVENTS)
    summary_file = property(lambda self: self.path / self.SUMMARY)
    metrics_file = property(lambda self: self.path / self.METRICS)
    best = property(lambda self: self.path / self.BEST)
    last = property(lambda self: self.path / self.LAST)
    state_file = property(lambda self: self.path / self.STATE)
    results_file = property(lambda self: self.path / self.RESULTS)
    probs_file = property(lambda self: self.path / self.PROBS)
    lr_find_file = property(lambda self: self.path / self.LR_FIND)
    lock_file = property(lambda self: self.path / self.LOCK)
    cancel_file = property(lambda self: self.path / self.CANCEL)
    worker_log = property(lambda self: self.path / self.WORKER_LOG)
    traceback_file = property(lambda self: self.path / self.TRACEBACK)
    skipped_file = property(lambda self: self.path / self.SKIPPED)
    heartbeat_file = property(lambda self: self.path / self.HEARTBEAT)
    export = property(lambda self: ExportDir(self.path / "export"))

    def is_run(self) -> bool:
        """A folder holding a config or an event stream (report/, export/ and the like are not runs)."""
        return self.config_file.exists() or self.events_file.exists()

    # --- readers ---------------------------------------------------------------

    def config_dict(self) -> dict:
        return read_json_object(self.config_file)

    def config(self) -> "RunConfig":
        """The run's resolved config; StoreError naming the file when missing, unreadable or invalid."""
        from engine.config import ConfigError, RunConfig

        try:
            return RunConfig.from_dict(self.config_dict(), str(self.config_file))
        except ConfigError as exc:
            raise StoreError(str(exc)) from None

    def events(self, offset: int = 0) -> tuple[list[ev.Event], int]:
        """Complete events from byte ``offset`` on, and the offset after the last complete line."""
        return ev.read_events(self.events_file, offset)

    def scan_events(self, offset: int = 0) -> ev.EventBatch:
        """``events`` with the count of lines skipped as unreadable or from a newer schema."""
        return ev.scan_events(self.events_file, offset)

    def stored_summary(self) -> dict:
        return read_json_object(self.summary_file)

    def results(self) -> dict | None:
        """results.json (test metrics, per-class report, confusion matrix, top errors); None before the test;
        StoreError naming the file and its first misfit key when a known key holds the wrong type."""
        try:
            obj = read_json_object(self.results_file)
        except MissingFile:
            return None
        bad = results_misfit(obj)
        if bad:
            raise StoreError(f"{self.results_file}: {bad}; delete it and `finetune-tui resume {self.grid_name}` "
                             "tests the run again")
        return obj

    def lr_find(self) -> dict | None:
        """lr_find.json: ``{"stage", "lrs", "losses", "suggestion", ...}`` (engine.lr_find.LrCurve); None when the
        run chose no LR by a range test."""
        try:
            return read_json_object(self.lr_find_file)
        except MissingFile:
            return None

    def metrics(self) -> "pd.DataFrame | None":
        """metrics.csv, one row per epoch (a replayed epoch keeps its last row); None when absent or empty."""
        import pandas as pd

        if not self.metrics_file.exists():
            return None
        try:
            df = pd.read_csv(self.metrics_file)
        except (ValueError, OSError) as exc:
            raise StoreError(f"{self.metrics_file} is unreadable ({exc})") from None
        if "epoch" not in df.columns or df.empty:
            return None
        return df.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)

    def probs(self) -> TestProbs | None:
        """test_probs.npz; None before the test, StoreError when unreadable."""
        import numpy as np

        if not self.probs_file.exists():
            return None
        again = f"delete it and `finetune-tui resume {self.grid_name}` tests the run again"
        try:
            npz = np.load(self.probs_file, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # numpy's words for "not an .npz" talk about pickles
            raise StoreError(f"{self.probs_file} is not a numpy .npz file (damaged?); {again}") from None
        try:
            with npz:
                probs = np.asarray(npz["probs"], dtype=np.float64)
                labels = np.asarray(npz["labels"], dtype=np.int64)
                preds = np.asarray(npz["preds"], dtype=np.int64) if "preds" in npz else None
                index = np.asarray(npz["index"], dtype=np.int64) if "index" in npz else None
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise StoreError(f"{self.probs_file} is unreadable ({type(exc).__name__}: {exc}); {again}") from None
        n = len(labels)
        shapes_fit = (probs.ndim == 2 and probs.shape[0] == n and probs.shape[1] >= 2 and labels.ndim == 1
                      and all(a is None or a.shape == (n,) for a in (preds, index)))
        if not shapes_fit or not np.isfinite(probs).all():
            raise StoreError(f"{self.probs_file} doesn't hold one finite row of probabilities per test label "
                             f"(probs {probs.shape}, labels {labels.shape}); {again}")
        return TestProbs(probs, labels, probs.argmax(1) if preds is None else preds, index)

    def checkpoint_meta(self) -> "ModelMeta":
        """The ``ModelMeta`` of best.safetensors, read from the file's header (no torch)."""
        from engine.model_meta import read_safetensors_meta

        return read_safetensors_meta(self.best)

    def has_checkpoint(self) -> bool:
        """A best checkpoint exists (the run finished at least one epoch)."""
        return self.best.is_file()

    def worker_log_tail(self, n: int, chunk: int = 16384) -> tuple[str, ...]:
        """The last ``n`` lines of worker.log, reading at most ``chunk`` bytes from its end."""
        try:
            with open(self.worker_log, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - chunk))
                data = fh.read()
        except OSError:
            return ()
        lines = data.decode("utf-8", errors="replace").splitlines()
        if size > chunk:
            lines = lines[1:]  # the first line is probably cut
        return tuple(lines[-n:])

    # --- liveness and control ----------------------------------------------------

    def alive(self) -> bool:
        """A worker lives: it holds run.lock (its host is this one), or beats (another host)."""
        return self.liveness().alive

    def liveness(self) -> "Liveness":
        """Whether a worker lives, and how that was told: the flock where the worker's host is this one (or
        it left no heartbeat), its heartbeat where it runs elsewhere (a flock can't be trusted across hosts)."""
        beat = read_heartbeat(self.heartbeat_file)
        if beat is not None and (beat.host != local_host() or self._elsewhere(beat)):
            return Liveness(beat.fresh(), beat, self._elsewhere(beat))
        return Liveness(is_locked(self.lock_file), beat)

    def _elsewhere(self, beat: Heartbeat) -> bool:
        """The worker holds its flock in another copy of this folder (a node's scratch copy, shipped here)."""
        return bool(beat.dir) and beat.dir != os.path.realpath(self.path)

    def heartbeat(self) -> Heartbeat | None:
        return read_heartbeat(self.heartbeat_file)

    def clear_heartbeat(self) -> None:
        """Forget a dead worker's last beat (its node is known lost)."""
        self.heartbeat_file.unlink(missing_ok=True)

    def lock(self) -> FileLock:
        return FileLock(self.lock_file)

    def request_cancel(self, reason: str = "cancelled by user") -> None:
        atomic_write_text(self.cancel_file, reason + "\n")

    def cancel_reason(self) -> str | None:
        return cancel_reason_in(self.cancel_file)

    def clear_cancel(self) -> None:
        self.cancel_file.unlink(missing_ok=True)

    # --- writers (the worker's and orchestrator's side) -----------------------------

    def write_config(self, config: "RunConfig") -> None:
        atomic_write_json(self.config_file, config.to_dict())

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.results_file, results)

    def write_lr_find(self, curve: dict) -> None:
        atomic_write_json(self.lr_find_file, curve)

    def write_probs(self, probs: "np.ndarray", labels: "np.ndarray", index: "np.ndarray") -> None:
        import numpy as np

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
                np.savez_compressed(fh, probs=probs.astype(np.float32), labels=labels, preds=probs.argmax(1),
                                    index=index)

        atomic_write(self.probs_file, write)

    def write_metrics(self, rows: list[dict]) -> None:
        import pandas as pd

        frame = pd.DataFrame(rows)
        atomic_write(self.metrics_file, lambda tmp: frame.to_csv(tmp, index=False))

    def write_with(self, path: Path, write: Callable[[str], None]) -> None:
        """Atomically write one of this run's files with ``write(tmp_path)`` (checkpoints)."""
        atomic_write(path, write)

    def write_traceback(self, text: str) -> None:
        atomic_write_text(self.traceback_file, text)

    def write_skipped(self, skipped: "list[tuple[str, str]] | tuple") -> None:
        """The unreadable images a run trained without: ``path<TAB>reason``, one a line."""
        atomic_write_text(self.skipped_file, "".join(f"{path}\t{reason}\n" for path, reason in skipped))

    def skipped(self) -> list[tuple[str, str]]:
        """skipped_images.txt as (path, reason) pairs; empty when the run skipped nothing."""
        try:
            text = self.skipped_file.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.skipped_file} can't be read ({exc})") from None
        return [tuple(line.split("\t", 1)) if "\t" in line else (line, "") for line in text.splitlines() if line]


@dataclass(frozen=True)
class Liveness:
    alive: bool
    beat: Heartbeat | None  # the worker's last heartbeat, when it left one
    elsewhere: bool = False  # its worker trains in another copy of the folder (ship mode)

    @property
    def remote(self) -> bool:
        """Told by a heartbeat: from another host, or from a worker whose flock is in another folder."""
        return self.beat is not None and (self.beat.host != local_host() or self.elsewhere)

    def dead_because(self) -> str:
        """Why a dead worker reads as dead, for its error line (empty when the flock told)."""
        if not self.remote or self.alive:
            return ""
        return f"no heartbeat from {self.beat.host} for {self.beat.age():.0f} s"


