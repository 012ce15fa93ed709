"""The export API for the CLI and the TUI (documented in ``export/__init__.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.store import GridDir, RunDir
from export.benchmark import DEFAULT_BATCHES, BenchConfig
from export.ort_session import default_threads, resolve_provider
from export.parity import FP32_ATOL
from export.quantize import VARIANTS
from export.run_export import ExportProgress, ProgressFn, RunExport, data_key, load_data, load_export
from export.selection import ExportError
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
               threads: int | None = None, bench_config: BenchConfig | None = None, data: Any = None,
               embed_preprocess: bool = True) -> dict:
    """Export the run's best checkpoint and measure it; returns the export summary (docs/CONTRACTS.md).

    Failures of the export itself come back as ``status`` "failed" / "parity_failed" (and are
    written; a failed attempt never replaces a good export: its ``error`` then says the previous
    one is kept); user errors (no checkpoint, bad arguments, export already running) raise ExportError.
    ``providers``: onnxruntime providers to benchmark (default: all this build offers; one that
    falls back to CPU is reported as a fallback, never timed under its name). ``device``: where
    PyTorch and onnxruntime evaluate the test set ("auto": CUDA when both can use it, else CPU).
    ``data``: a DatasetSplits-like object (``classes``, ``test.x``, ``test.y``, optional
    ``train.x``) instead of loading the run's dataset. ``embed_preprocess``: also write the
    deployable file (``ExportDir.embedded``: uint8 images of any size in, preprocessing and
    softmax in the graph; ``export.embed``), checked on the test split and benchmarked beside
    the plain one.
    """
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
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
    if not rd.has_checkpoint():
        raise ExportError(f"{rd.path} has no {rd.BEST}: the run has not finished an epoch, or the file was deleted "
                          f"(`finetune-tui resume {rd.grid_name}` rebuilds it)")
    lock = rd.export.lock()
    if not lock.acquire():
        raise ExportError(f"another export of {rd.run_id} is running")
    try:
        job = RunExport(rd, benchmark=benchmark, batches=batches, variants=variants, progress=progress,
                        providers=providers, device=device, atol=atol, threads=threads,
                        bench_config=bench_config or BenchConfig(), data=data, embed_preprocess=embed_preprocess)
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
    """Export the grid's selected runs (``kwargs`` as for export_run), then write the grid's exports table.

    ``select``: see ``select_runs`` (best = ``engine.store.BEST_RULE``). Returns one summary per
    exported run, each with ``run_id`` added. A run whose export fails is recorded as failed and
    the others go on.
    """
    gdir = grid_dir if isinstance(grid_dir, GridDir) else GridDir(grid_dir)
    chosen = select_runs(grid_records(gdir), select)
    if not chosen:
        raise ExportError(f"grid {gdir.name} has no finished run with a best checkpoint to export")
    out, loaded = [], {}  # runs of one dataset share its splits: loaded once
    for record in chosen:
        kw = dict(kwargs)
        if kw.get("data") is None:
            key = data_key(record.dir)
            if key is not None and key not in loaded:
                loaded.clear()
                try:
                    loaded[key] = load_data(record.dir)
                except Exception:  # export_run loads it again and records the failure for this run
                    loaded[key] = None
            kw["data"] = loaded.get(key)
        summary = export_run(record.dir, **kw)
        out.append({"run_id": record.run_id, **summary})
    write_grid_csv(gdir)
    return out
