"""make_report: every figure and table of the reference experiment for one grid, plus an index.

Usable from the CLI (``finetune-tui report``) and from the TUI (call it in a
worker thread; figures are drawn on Agg canvases, no pyplot, no display).
Works on a partly finished grid: whatever exists is reported, every gap is
named in the index (``Report.gaps``). A step that fails keeps the file the
previous report made for it, marked stale in the index (``Report.failures``).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from engine.errors import StoreError, UserError
from engine.store import GridDir, RunDir, atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is being made)

GRADCAM_ERRORS = 6
GRADCAM_CORRECT = 4
MANIFEST = ".report-files.json"  # what each file of the report shows, which step made it, and when
LEGACY_MANIFEST = ".report-files"  # earlier reports: file names only, one a line
ERRORS_LOG = "report_errors.log"


class ReportError(UserError):
    """The report can't be made at all (no such grid folder); one line for the user."""


@dataclass
class Artifact:
    """One file the report wrote, with what it shows."""

    name: str
    caption: str
    dataset: str = ""  # "" = grid-wide
    kind: str = "figure"  # figure or table
    step: str = ""  # the step that made it
    made: float = 0.0  # when (time.time())
    stale: str = ""  # non-empty: kept from an earlier report (which) because its step failed this time

    def to_dict(self) -> dict:
        return {"name": self.name, "caption": self.caption, "dataset": self.dataset, "kind": self.kind,
                "step": self.step, "made": self.made, "stale": self.stale}


@dataclass
class StepFailure:
    """A report step that raised: what it was, the error in one line, the earlier files kept for it."""

    step: str
    error: str
    kept: list[str] = field(default_factory=list)

    def line(self) -> str:
        kept = f"; kept the previous {', '.join(self.kept)} (marked stale)" if self.kept else ""
        return f"{self.step}: {self.error}{kept}"


@dataclass
class Report:
    """What make_report produced; index.py renders it."""

    grid: object  # report.loading.GridData
    out: Path
    table: pd.DataFrame  # tables.run_table
    best: pd.DataFrame  # tables.select_best
    artifacts: list[Artifact] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    pairs: dict[str, pd.DataFrame] = field(default_factory=dict)
    deltas: pd.DataFrame | None = None
    grid_running: bool = False
    seconds: float = 0.0
    tracebacks: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds
    failures: list[StepFailure] = field(default_factory=list)
    step: str = ""  # the step running now (artifacts are filed under it)
    studies: list = field(default_factory=list)  # report.study_section.StudySection, one per related study

    def add(self, path: Path, caption: str, dataset: str = "", kind: str = "figure") -> None:
        self.artifacts.append(Artifact(path.name, caption, dataset, kind, step=self.step, made=time.time()))

    def gap(self, text: str) -> None:
        log.info("report gap: %s", text)
        self.gaps.append(text)


def make_report(grid_dir: str | Path, *, data_root: str | Path = "data", out_dir: str | Path | None = None,
                progress: Progress | None = None) -> Path:
    """Write the report of the grid at ``grid_dir`` into ``out_dir`` (default ``GridDir.report_dir``); return it.

    ``progress(done, total, message)`` is called before each step. Raises
    ReportError only when there is no grid to report on; anything else that
    fails is written into the report as a gap (a failed step keeps its earlier file, marked stale).
    """
    return build_report(grid_dir, data_root=data_root, out_dir=out_dir, progress=progress).out


def build_report(grid_dir: str | Path, *, data_root: str | Path = "data", out_dir: str | Path | None = None,
                 progress: Progress | None = None) -> Report:
    """make_report, returning the Report (artifacts, gaps, failed steps) rather than only its folder."""
    from report import index, tables
    from report.images import ImageCache
    from report.loading import load_grid

    start = time.perf_counter()
    gdir = grid_dir if isinstance(grid_dir, GridDir) else GridDir(grid_dir)
    if not gdir.path.is_dir():
        raise ReportError(f"grid folder {gdir.path} not found")
    if not gdir.exists() and not any(RunDir(p).is_run() for p in gdir.path.iterdir() if p.is_dir()):
        raise ReportError(f"{gdir.path} is not a grid folder (no {gdir.INFO} and no run folders)")
    out = Path(out_dir) if out_dir is not None else gdir.report_dir
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_manifest(out)

    grid = load_grid(gdir)
    table = tables.run_table(grid)
    report = Report(grid=grid, out=out, table=table, best=tables.select_best(table), grid_running=gdir.running())
    for problem in grid.problems:
        report.gap(problem)
    for run in grid.runs:
        if run.status != "done":
            report.gap(f"run {run.run_id}: {run.status}" + (f" ({run.error})" if run.error else ""))
        elif run.problems:
            report.gap(f"run {run.run_id}: " + "; ".join(run.problems))
        if run.results and run.results.get("skipped_images"):  # data.on_bad_image = "skip": what it left out
            report.gap(f"run {run.run_id}: trained without {len(run.results['skipped_images'])} unreadable image(s): "
                       + ", ".join(map(str, run.results["skipped_images"])))
        if run.export and run.export.get("status") not in (None, "ok"):
            report.gap(f"export of {run.run_id}: {run.export.get('status')}"
                       + (f" ({run.export.get('error')})" if run.export.get("error") else ""))

    images = ImageCache(data_root)
    datasets = _ordered(grid.info.get("config", {}).get("datasets"), grid.datasets)
    backbones = _ordered(grid.info.get("config", {}).get("backbones"), [r.backbone for r in grid.runs])
    steps = _plan(report, grid, datasets, backbones, images)
    from report import study_section

    steps += study_section.steps(report, gdir)
    for k, (message, step) in enumerate(steps):
        if progress is not None:
            progress(k, len(steps), message)
        began = time.perf_counter()
        report.step = message
        try:
            step()
        except Exception as exc:  # one broken figure must not cost the rest of the report
            log.debug("report step %s failed", message, exc_info=True)
            report.tracebacks.append(f"--- {message}\n{traceback.format_exc()}")
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            failure = StepFailure(message, f"{type(exc).__name__}: {first}")
            _keep_previous(report, failure, previous)
            report.failures.append(failure)
            kept = f"; the previous {', '.join(failure.kept)} is kept, marked stale" if failure.kept else ""
            report.gap(f"{message} failed: {failure.error} (traceback in {ERRORS_LOG}){kept}")
        report.timings[message] = time.perf_counter() - began
    report.step = ""
    if progress is not None:
        progress(len(steps), len(steps) + 1, "index")
    report.seconds = time.perf_counter() - start
    for path in index.write(report):
        readable(path)
    written = {a.name for a in report.artifacts} | {index.MARKDOWN, index.HTML}
    if report.tracebacks:
        atomic_write_text(out / ERRORS_LOG, "\n".join(report.tracebacks))
        readable(out / ERRORS_LOG)
        written.add(ERRORS_LOG)
    _clean_stale(out, set(previous) - written)
    _write_manifest(out, report.artifacts)
    if progress is not None:
        progress(len(steps) + 1, len(steps) + 1, "done")
    return report


def _ordered(preferred, found) -> list[str]:
    preferred = [p for p in (preferred or []) if p in set(found)]
    return preferred + [f for f in dict.fromkeys(found) if f not in preferred]


def _read_manifest(out: Path) -> dict[str, Artifact]:
    """The files the previous report wrote, by name (empty when there was none or it can't be read)."""
    legacy = out / LEGACY_MANIFEST
    if legacy.is_file():  # names only, so no step keeps them; the file itself goes
        try:
            names = [n.strip() for n in legacy.read_text().splitlines() if n.strip()]
        except OSError:
            names = []
        legacy.unlink(missing_ok=True)
        return {n: Artifact(n, "") for n in names}
    try:
        entries = read_json(out / MANIFEST).get("files", [])
        return {e["name"]: Artifact(e["name"], e["caption"], e.get("dataset", ""), e.get("kind", "figure"),
                                    e.get("step", ""), float(e.get("made", 0.0)), e.get("stale", ""))
                for e in entries}
    except (StoreError, AttributeError, KeyError, TypeError, ValueError):
        return {}


def _write_manifest(out: Path, artifacts: list[Artifact]) -> None:
    atomic_write_json(out / MANIFEST, {"version": 1, "files": [a.to_dict() for a in artifacts]})


def _keep_previous(report: Report, failure: StepFailure, previous: dict[str, Artifact]) -> None:
    """A failed step costs nothing already made: the previous report's files of that step that this
    run did not remake stay, listed as stale artifacts."""
    fresh = {a.name for a in report.artifacts}
    for old in previous.values():
        if old.step == failure.step and old.name not in fresh and (report.out / old.name).is_file():
            made = time.strftime("%Y-%m-%d %H:%M", time.localtime(old.made))
            report.artifacts.append(Artifact(old.name, old.caption, old.dataset, old.kind, old.step, old.made,
                                             stale=f"made by the report of {made}"))
            failure.kept.append(old.name)


def _clean_stale(out: Path, names: set[str]) -> None:
    """Remove files an earlier report wrote that this one did not (a run that since disappeared)."""
    for name in names:
        if "/" not in name and not name.startswith("."):
            (out / name).unlink(missing_ok=True)


# --- the steps -----------------------------------------------------------------


def _plan(report: Report, grid, datasets: list[str], backbones: list[str], images) -> list[tuple[str, Callable]]:
    """Every step of the report, as (message, callable); each step adds artifacts or gaps."""
    steps: list[tuple[str, Callable]] = [("dataset_samples.png", lambda: _samples(report, datasets, images))]
    for ds in datasets:
        runs = grid.runs_for(ds)
        steps += [
            (f"benchmark_{ds}.csv", lambda ds=ds: _benchmark(report, ds)),
            (f"training_history_{ds}.png", lambda ds=ds, runs=runs: _history(report, ds, runs)),
            (f"weight_optimization_{ds}.png", lambda ds=ds, runs=runs: _weights(report, ds, runs)),
            (f"confusion_matrices_{ds}.png", lambda ds=ds, runs=runs: _confusion(report, ds, runs)),
            (f"confused_pairs_{ds}.csv", lambda ds=ds, runs=runs: _pairs(report, ds, runs)),
            (f"strategy_comparison_{ds}.png", lambda ds=ds, runs=runs: _strategy(report, ds, runs)),
            (f"calibration_{ds}.png", lambda ds=ds, runs=runs: _calibration(report, ds, runs)),
            (f"latency_{ds}.png", lambda ds=ds: _latency(report, ds)),
            (f"axes_{ds}.csv", lambda ds=ds, runs=runs: _axes(report, ds, runs)),
            (f"lr_find_{ds}.png", lambda ds=ds, runs=runs: _lr_find(report, ds, runs)),
        ]
        for bb in [b for b in backbones if any(r.backbone == b for r in runs)]:
            steps += [
                (f"errors_{ds}_{bb}.png", lambda ds=ds, bb=bb: _errors(report, ds, bb, images)),
                (f"gradcam_{ds}_{bb}.png", lambda ds=ds, bb=bb: _gradcam(report, ds, bb, images)),
            ]
    steps += [("final comparison", lambda: _final(report, datasets, backbones)),
              ("runs.csv", lambda: _runs_csv(report))]
    return steps


def _csv(report: Report, df: pd.DataFrame, name: str, caption: str, dataset: str = "", index: bool = False) -> None:
    from engine.store import atomic_write

    path = report.out / name
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=index, float_format="%.6g"))
    readable(path)
    report.add(path, caption, dataset, kind="table")


def readable(path: Path) -> None:
    """Give a file the usual umask permissions (atomic_write's temp files are created 0600)."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    # read, not set-and-restore: os.umask would briefly change it for every thread of the process
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _done_runs(report: Report, dataset: str) -> list:
    return [r for r in report.grid.runs_for(dataset) if r.done]


def _samples(report: Report, datasets: list[str], images) -> None:
    from report.figures import samples
    from report.images import samples as pick

    items = []
    for ds in datasets:
        img = images.get(ds, report.grid.runs_for(ds))
        if img.train_x is None and img.test_x is None:
            report.gap(f"dataset_samples.png: no images for {ds} ({img.problem})")
            items.append((ds, [], img.problem))
        else:
            items.append((ds, pick(img, samples.PER_CLASS), ""))
    path = samples.draw(items, report.out / "dataset_samples.png")
    report.add(path, "A few training images per class of each dataset.")


def _benchmark(report: Report, ds: str) -> None:
    from report import tables

    _csv(report, tables.benchmark(report.table, ds), f"benchmark_{ds}.csv",
         "Every run on this dataset: test metrics, ECE, epochs, time, ONNX latency where exported.", ds)


def _axes(report: Report, ds: str, runs) -> None:
    from report import tables

    if not any(r.summary is not None and r.summary.axes for r in runs):
        return  # a grid without axes: nothing to group by, and no gap to name
    df = tables.axes_table(runs, ds)
    if df.empty:
        report.gap(f"axes_{ds}.csv not made: no run on {ds} with axis values has finished")
        return
    _csv(report, df, f"axes_{ds}.csv", "Runs grouped by each axis value: mean test accuracy, F1, best-epoch val "
                                       "accuracy and training time, and the best test accuracy.", ds)


def _lr_find(report: Report, ds: str, runs) -> None:
    from report.figures import lr_find

    if not any(r.lr_find for r in runs):
        return  # no run chose its LR by a range test
    path = lr_find.draw(ds, runs, report.out / f"lr_find_{ds}.png")
    report.add(path, "LR range test of each run that chose its learning rate by one: loss against LR, "
                     "the chosen LR dashed.", ds)


def _history(report: Report, ds: str, runs) -> None:
    from report.figures import history

    if not any(r.metrics is not None for r in runs):
        report.gap(f"training_history_{ds}.png not made: no run on {ds} has recorded an epoch yet")
        return
    path = history.draw(ds, runs, report.out / f"training_history_{ds}.png")
    report.add(path, "Train (dashed) and validation (solid) accuracy and loss per epoch; star = kept epoch.", ds)


def _weights(report: Report, ds: str, runs) -> None:
    from report.figures import weights
    from report.loading import norm_columns

    if not any(r.metrics is not None and norm_columns(r.metrics) for r in runs):
        report.gap(f"weight_optimization_{ds}.png not made: no run on {ds} recorded layer norms yet")
        return
    path = weights.draw(ds, runs, report.out / f"weight_optimization_{ds}.png")
    report.add(path, "Change of each layer group's L2 weight norm since before training: which layers learn.", ds)


def _confusion(report: Report, ds: str, runs) -> None:
    from report import tables
    from report.figures import confusion

    cells = []
    for r in runs:
        cm = tables.confusion_for(r) if r.done else None
        acc = (r.results or {}).get("accuracy")
        why = f"{r.status}" + (f": {r.error[:80]}" if r.error else "") if cm is None else f"test accuracy {acc:.3f}"
        cells.append((r.backbone, r.strategy, cm, r.classes, why))
    if not any(c[2] is not None for c in cells):
        report.gap(f"confusion_matrices_{ds}.png not made: no finished run on {ds}")
        return
    path = confusion.draw(ds, cells, report.out / f"confusion_matrices_{ds}.png")
    report.add(path, "Row-normalised confusion matrices, one per model (rows: true class; each row sums to 1).", ds)


def _pairs(report: Report, ds: str, runs) -> None:
    from report import tables

    pairs = tables.dataset_confused_pairs(runs)
    report.pairs[ds] = pairs
    if not _done_runs(report, ds):
        return
    _csv(report, pairs, f"confused_pairs_{ds}.csv",
         "Class pairs most often taken for each other, summed over every finished model of the dataset.", ds)


def _strategy(report: Report, ds: str, runs) -> None:
    from report.figures import strategy

    if not any(r.metrics is not None for r in runs):
        report.gap(f"strategy_comparison_{ds}.png not made: no run on {ds} has recorded an epoch yet")
        return
    rows = report.table[report.table["dataset"] == ds]
    path = strategy.draw(ds, runs, rows, report.out / f"strategy_comparison_{ds}.png")
    report.add(path, "Validation accuracy per strategy over epochs; final test accuracy, precision, recall, F1; "
                     "epochs until early stop.", ds)


def _calibration(report: Report, ds: str, runs) -> None:
    from report import metrics
    from report.figures import calibration

    cells = []
    for r in runs:
        if r.probs is not None:
            cells.append((r.backbone, r.strategy, metrics.reliability(r.probs, r.labels), ""))
        else:
            cells.append((r.backbone, r.strategy, None, f"{r.status}: no test probabilities"))
    if not any(c[2] is not None for c in cells):
        report.gap(f"calibration_{ds}.png not made: no run on {ds} has test probabilities ({RunDir.PROBS})")
        return
    path = calibration.draw(ds, cells, report.out / f"calibration_{ds}.png")
    report.add(path, "Reliability diagrams with expected calibration error (15 equal-width bins) per model.", ds)


def _latency(report: Report, ds: str) -> None:
    from report.figures import latency

    rows = report.table[(report.table["dataset"] == ds) & report.table["onnx_p50_ms_batch1"].notna()]
    if rows.empty:
        report.gap(f"latency_{ds}.png not made: no run on {ds} has ONNX export results (`finetune-tui export`)")
        return
    path = latency.draw(ds, rows, report.out / f"latency_{ds}.png")
    report.add(path, "Test accuracy against ONNX Runtime latency (p50, batch 1) per exported model.", ds)


def _best_run(report: Report, ds: str, bb: str):
    """The selected (best by validation) finished run of a dataset x backbone, or None."""
    pick = report.best[(report.best["dataset"] == ds) & (report.best["backbone"] == bb)]
    if pick.empty:
        return None
    run_id = pick.iloc[0]["run_id"]
    return next(r for r in report.grid.runs if r.run_id == run_id)


def _errors(report: Report, ds: str, bb: str, images) -> None:
    from report import tables
    from report.figures import errors
    from report.images import check_alignment

    run = _best_run(report, ds, bb)
    if run is None:
        report.gap(f"errors_{ds}_{bb}.png not made: no finished {bb} run on {ds}")
        return
    top = tables.errors_for(run, 20)
    img = images.get(ds, report.grid.runs_for(ds))
    problem = check_alignment(img, run)
    if problem:
        report.gap(f"errors_{ds}_{bb}.png drawn without images: {problem}")
    n_test = int((run.results or {}).get("n_test") or (len(run.labels) if run.labels is not None else 0))
    acc = float((run.results or {}).get("accuracy") or 0.0)
    n_wrong = int((run.preds != run.labels).sum()) if run.labels is not None else int(round(n_test * (1 - acc)))
    path = errors.draw(ds, bb, run.strategy, top, run.classes, None if problem else img.test_x, n_test, n_wrong,
                       report.out / f"errors_{ds}_{bb}.png",
                       note="images unavailable: " + problem[:120] if problem else "")
    report.add(path, f"The {len(top)} most confident misclassifications of {bb} ({run.strategy}).", ds)


def _gradcam(report: Report, ds: str, bb: str, images) -> None:
    from report import gradcam, metrics
    from report.figures import gradcam as draw_gradcam
    from report.images import check_alignment

    run = _best_run(report, ds, bb)
    if run is None:
        report.gap(f"gradcam_{ds}_{bb}.png not made: no finished {bb} run on {ds}")
        return
    if run.probs is None or not run.checkpoint.exists():
        report.gap(f"gradcam_{ds}_{bb}.png not made: {run.run_id} lacks {RunDir.PROBS} or {RunDir.BEST}")
        return
    img = images.get(ds, report.grid.runs_for(ds))
    problem = check_alignment(img, run)
    if problem:
        report.gap(f"gradcam_{ds}_{bb}.png not made: {problem}")
        return
    wrong = metrics.top_errors(run.probs, run.labels, GRADCAM_ERRORS)
    right = metrics.confident_correct(run.probs, run.labels, GRADCAM_CORRECT)
    positions = np.concatenate([wrong["position"].to_numpy(), right["position"].to_numpy()]).astype(np.int64)
    if len(positions) == 0:
        report.gap(f"gradcam_{ds}_{bb}.png not made: no test predictions")
        return
    true = run.labels[positions]
    cam = gradcam.compute(run.checkpoint, img.test_x[positions], true)
    agree = float(np.abs(cam.probs - run.probs[positions]).max())
    if agree > 1e-2:
        report.gap(f"gradcam_{ds}_{bb}.png: the checkpoint's probabilities differ from {RunDir.PROBS} by up to "
                   f"{agree:.3f} (checkpoint and results from different epochs?)")
    path = draw_gradcam.draw(ds, bb, run.strategy, cam, true, run.classes, len(wrong),
                             report.out / f"gradcam_{ds}_{bb}.png")
    report.add(path, f"Grad-CAM of {bb} ({run.strategy}) on its most confident errors and a few correct "
                     f"predictions (layer {cam.layer}).", ds)


def _final(report: Report, datasets: list[str], backbones: list[str]) -> None:
    from report import tables
    from report.figures import final

    acc = tables.comparison(report.best, "accuracy", datasets, backbones)
    f1 = tables.comparison(report.best, "f1_macro", datasets, backbones)
    _csv(report, acc, "final_accuracy_comparison.csv",
         "Test accuracy, dataset x backbone (best strategy by validation).", index=True)
    _csv(report, f1, "final_f1_comparison.csv", "Test macro F1, dataset x backbone (best strategy by validation).",
         index=True)
    report.deltas = tables.reference_deltas(report.best)
    _csv(report, report.deltas, "reference_comparison.csv",
         "Selected runs against the seed's reference table (SPEC.md); NaN = no reference.")
    if report.best.empty:
        report.gap("final_comparison.png not made: no finished runs")
        return
    path = final.draw(acc, f1, tables.strategy_pivot(report.best, datasets, backbones),
                      report.out / "final_comparison.png")
    report.add(path, "Test accuracy and macro F1 by dataset and backbone; black bars: the seed's reference.")


def _runs_csv(report: Report) -> None:
    _csv(report, report.table, "runs.csv", "Every run of the grid with status, metrics and error, one row each.")
