"""The export API for the CLI and the TUI (documented in ``export/__init__.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.store import FileLock
from export.benchmark import DEFAULT_BATCHES, BenchConfig
from export.ort_session import default_threads, resolve_provider
from export.parity import FP32_ATOL
from export.quantize import VARIANTS
from export.run_export import LOCK, ExportError, ExportProgress, ProgressFn, RunExport, data_key, load_data, load_export
from export.table import (
    SELECTIONS,
    grid_records,
    grid_table,
    latency_rows,
    run_row,
    select_runs,
    write_grid_csv,
)

__all__ = ["ExportError", "ExportProgress", "SELECTIONS", "export_grid", "export_run", "grid_table", "latency_rows",
           "load_export", "run_row", "select_runs", "write_grid_csv"]


def export_run(run_dir: str | Path, *, benchmark: bool = True, batches: Iterable[int] = DEFAULT_BATCHES,
               variants: Iterable[str] = (), progress: ProgressFn | None = None,
               providers: Iterable[str] | None = None, device: str = "auto", atol: float = FP32_ATOL,
               threads: int | None = None, bench_config: BenchConfig | None = None, data: Any = None) -> dict:
    """Export the run's best checkpoint and measure it; returns ``export/summary.json``'s content.

    Failures of the export itself come back as ``status`` "failed" / "parity_failed" (and are
    written); user errors (no checkpoint, bad arguments, export already running) raise ExportError.
    ``providers``: onnxruntime providers to benchmark (default: all this build offers; one that
    falls back to CPU is reported as a fallback, never timed under its name). ``device``: where
    PyTorch and onnxruntime evaluate the test set ("auto": CUDA when both can use it, else CPU).
    ``data``: a DatasetSplits-like object (``classes``, ``test.x``, ``test.y``, optional
    ``train.x``) instead of loading the run's dataset.
    """
    run_dir = Path(run_dir)
    threads = threads or default_threads()  # the same for onnxruntime and PyTorch, recorded
    batches = _check_batches(batches)
    variants = tuple(dict.fromkeys(variants))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ExportError(f"variant {unknown[0]!r} not known; choose from {', '.join(VARIANTS)}")
    try:
        providers = [resolve_provider(p) for p in providers] if providers is not None else None
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if not (run_dir / "best.safetensors").is_file():
        raise ExportError(f"{run_dir} has no best.safetensors (not a finished run?)")
    lock = FileLock(run_dir / "export" / LOCK)
    if not lock.acquire():
        raise ExportError(f"another export of {run_dir.name} is running")
    try:
        job = RunExport(run_dir, benchmark=benchmark, batches=batches, variants=variants, progress=progress,
                        providers=providers, device=device, atol=atol, threads=threads,
                        bench_config=bench_config or BenchConfig(), data=data)
        return job.run()
    finally:
        lock.release()


def _check_batches(batches: Iterable[int]) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(b) for b in batches}))
    except (TypeError, ValueError):
        raise ExportError(f"batch sizes must be integers, got {batches!r}") from None
    if not out or out[0] < 1:
        raise ExportError(f"batch sizes must be at least 1, got {batches!r}")
    return out


def export_grid(grid_dir: str | Path, select: str = "all", **kwargs) -> list[dict]:
    """Export the grid's selected runs (``kwargs`` as for export_run), then write ``exports.csv``.

    Returns one summary per exported run, each with ``run_id`` added. A run whose export fails
    is recorded as failed and the others go on.
    """
    grid_dir = Path(grid_dir)
    chosen = select_runs(grid_records(grid_dir), select)
    if not chosen:
        raise ExportError(f"grid {grid_dir.name} has no finished run with a best checkpoint to export")
    out, loaded = [], {}  # runs of one dataset share its splits: loaded once
    for record in chosen:
        kw = dict(kwargs)
        if kw.get("data") is None:
            key = data_key(record.path)
            if key is not None and key not in loaded:
                loaded.clear()
                try:
                    loaded[key] = load_data(record.path)
                except Exception:  # export_run loads it again and records the failure for this run
                    loaded[key] = None
            kw["data"] = loaded.get(key)
        summary = export_run(record.path, **kw)
        out.append({"run_id": record.run_id, **summary})
    write_grid_csv(grid_dir)
    return out
