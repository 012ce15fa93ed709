"""The run store: the one owner of every file name and path of a run and a grid.

Layout (``runs/`` by default; ``default_root`` decides, FINETUNE_TUI_RUNS and the settings file first)::

    <root>/<grid>/            GridDir: grid.json, grid.lock, cancel, orchestrator.log, exports.csv, report/
    <root>/<grid>/<run>/      RunDir: config.json, events.jsonl, summary.json, metrics.csv, checkpoints,
                              results.json, test_probs.npz, run.lock, cancel, worker.log, export/
    <root>/.cache/datasets/   DatasetCacheDir: decoded datasets every run of every grid shares
    <root>/<study>/           StudyDir: study.json, study.lock, cancel, status.json, cells/, points/,
                              metrics.csv, figures (a feature-extractor study, engine/study)

Readers (``RunStore``, ``RunDir``, ``GridDir``, ``load_run``) never import torch.
Every file is replaced atomically (temp file + ``os.replace``) except the
append-only ``events.jsonl``, whose readers skip a torn last line. Liveness is
an ``flock`` held by the live process. Nothing outside this package spells a
store file name.
"""

from engine.errors import DiskFull, StoreError
from engine.store.atomic import (
    MissingFile,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
    read_json_object,
)
from engine.store.dataset_cache import CacheEntryDir, DatasetCacheDir
from engine.store.grid_dir import GridDir
from engine.store.locks import FileLock, is_locked
from engine.store.reader import (
    DEFAULT_ROOT,
    RunRecord,
    RunStore,
    check_name,
    dataset_cache_for,
    default_root,
    default_root_and_source,
    load_run,
)
from engine.store.run_dir import ExportDir, RunDir, TestProbs
from engine.store.study_dir import DEAD_STUDY, STUDY_STATUSES, StudyDir, StudyStatus, cell_key, file_key
from engine.store.summary import (
    BEST_RULE,
    DEAD_WORKER,
    STATUSES,
    RunSummary,
    best_epoch_of,
    fold,
    fold_batch,
    is_dead_worker_error,
    selection_key,
    settle,
    settle_finished,
)
from engine.store.writer import RunWriter

__all__ = [
    "BEST_RULE", "DEAD_STUDY", "DEAD_WORKER", "DEFAULT_ROOT", "STATUSES", "STUDY_STATUSES", "CacheEntryDir",
    "DatasetCacheDir", "DiskFull", "ExportDir", "FileLock", "GridDir", "MissingFile", "RunDir", "RunRecord", "RunStore",
    "RunSummary", "RunWriter", "StoreError", "StudyDir", "StudyStatus", "TestProbs", "atomic_write",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "best_epoch_of", "cell_key", "check_name",
    "dataset_cache_for", "default_root", "default_root_and_source", "file_key", "fold", "fold_batch",
    "is_dead_worker_error", "is_locked", "load_run", "read_json", "read_json_object", "selection_key", "settle", "settle_finished",
]
