"""Side-by-side comparison of runs: metric rows, the best value per row, winners per dataset.

Pure functions over RunState (and the run's test results when loaded), so tests need no Textual.
Winners are chosen by the store's one definition of best (``engine.store.selection_key``,
``BEST_RULE``): on validation only; test accuracy is shown beside them, never used to choose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.store import selection_key
from tui import format as fmt
from tui.store_watcher import RunState


@dataclass(frozen=True)
class Metric:
    """One row of the comparison: how to read it from a run, how to show it, which way is better."""

    key: str
    label: str
    value: Callable[[RunState, dict | None], object]
    text: Callable[[object], str]
    better: str = ""  # "max", "min" or "" (not ranked)
    export: bool = False  # a figure of the ONNX export (shown once any compared run has one)
    axes: bool = False  # the grid's axis values (shown once any compared run has some)


def _res(name: str) -> Callable[[RunState, dict | None], object]:
    return lambda run, results: (results or {}).get(name)


def _exp(name: str) -> Callable[[RunState, dict | None], object]:
    return lambda run, results: getattr(run.export, name) if run.export is not None else None


METRICS: list[Metric] = [
    Metric("grid", "grid", lambda r, _: r.key.split("/")[0], str),
    Metric("axes", "axes", lambda r, _: r.summary.axes_text or fmt.MISSING, str, axes=True),
    Metric("status", "status", lambda r, _: r.status, str),
    Metric("epoch", "epochs", lambda r, _: fmt.epoch(r.summary.epoch, r.summary.epochs), str),
    # the best epoch is the kept checkpoint (lowest val loss); runs are ranked by its val accuracy
    Metric("best_val_acc", "val acc % (best ep)", lambda r, _: r.summary.best_val_acc, fmt.pct, "max"),
    Metric("best_val_loss", "val loss (best ep)", lambda r, _: r.summary.best_val_loss, fmt.num, "min"),
    Metric("val_acc", "val acc % (last)", lambda r, _: r.summary.val_acc, fmt.pct, "max"),
    Metric("val_loss", "val loss (last)", lambda r, _: r.summary.val_loss, fmt.num, "min"),
    Metric("train_acc", "train acc % (last)", lambda r, _: r.summary.train_acc, fmt.pct, "max"),
    Metric("train_loss", "train loss (last)", lambda r, _: r.summary.train_loss, fmt.num, "min"),
    Metric("test_acc", "test accuracy %", lambda r, _: r.summary.test_accuracy, fmt.pct, "max"),
    Metric("test_f1", "test F1 macro %", lambda r, _: r.summary.test_f1_macro, fmt.pct, "max"),
    Metric("precision", "precision macro %", _res("precision_macro"), fmt.pct, "max"),
    Metric("recall", "recall macro %", _res("recall_macro"), fmt.pct, "max"),
    Metric("best_epoch", "best epoch", lambda r, _: r.summary.best_epoch or None, lambda v: str(v or fmt.MISSING)),
    Metric("train_time", "train time", lambda r, _: r.summary.train_seconds, fmt.duration, "min"),
    Metric("img_per_s", "img/s (train)", lambda r, _: r.summary.img_per_s, fmt.rate, "max"),
    Metric("onnx_acc", "ONNX accuracy %", _exp("onnx_accuracy"), fmt.pct, "max", export=True),
    Metric("latency", "ONNX CPU b1 p50 ms", _exp("cpu_b1_p50_ms"), fmt.ms, "min", export=True),
    Metric("size_mb", "ONNX size MB", _exp("size_mb"), lambda v: fmt.num(v, 1), "min", export=True),
    Metric("weights", "weights", lambda r, _: r.summary.weights or fmt.MISSING, str),
]


def metrics_for(runs: list[RunState]) -> list[Metric]:
    """The rows to show: export rows only once one of the runs has been exported."""
    exported = any(r.export is not None for r in runs)
    varied = any(r.summary.axes for r in runs)
    return [m for m in METRICS if (exported or not m.export) and (varied or not m.axes)]


def best_indices(values: list[object], better: str) -> set[int]:
    """Positions holding the best value of a row (ties all win); none when fewer than two values."""
    nums = [(i, v) for i, v in enumerate(values) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not better or len(nums) < 2:
        return set()
    target = max(v for _, v in nums) if better == "max" else min(v for _, v in nums)
    return {i for i, v in nums if v == target}


@dataclass(frozen=True)
class Winners:
    """Best run, strategy and backbone of one dataset, chosen on validation only (``engine.store.selection_key``)."""

    dataset: str
    run: RunState  # the best run: highest val accuracy at its best epoch, then lower val loss
    strategy: str  # the strategy, and the backbone, of the best run
    backbone: str
    runner_up_strategy: RunState | None  # the best run of any other strategy
    runner_up_backbone: RunState | None  # the best run of any other backbone
    n_runs: int  # runs judged
    finished: bool  # judged among finished runs (else among the runs so far: none has finished)

    @property
    def val_acc(self) -> float:
        return self.run.summary.best_val_acc  # type: ignore[return-value]

    @property
    def test_acc(self) -> float | None:
        """The chosen run's score on held-out data: shown, never used to choose."""
        return self.run.summary.test_accuracy


def ranked(runs: list[RunState]) -> list[RunState]:
    """Runs that have a validation score, best first by the store's one rule (``selection_key``)."""
    return sorted((r for r in runs if r.summary.best_val_acc is not None), key=lambda r: selection_key(r.summary))


def winners(runs: list[RunState]) -> list[Winners]:
    """Per dataset: the best run by ``engine.store.selection_key``, its strategy and backbone, and the best
    run of any other strategy and of any other backbone (the margin they won by).

    Only finished runs are judged while a dataset has any; before that, every run with a validation score.
    The test set takes no part in choosing (``BEST_RULE``).
    """
    by_dataset: dict[str, list[RunState]] = {}
    for run in ranked(runs):
        if run.summary.dataset:
            by_dataset.setdefault(run.summary.dataset, []).append(run)
    out = []
    for dataset in sorted(by_dataset):
        group = by_dataset[dataset]  # best first
        done = [r for r in group if r.status == "done"]
        pool = done or group
        best = pool[0]
        s = best.summary
        out.append(Winners(
            dataset=dataset, run=best, strategy=s.strategy, backbone=s.backbone,
            runner_up_strategy=next((r for r in pool if r.summary.strategy != s.strategy), None),
            runner_up_backbone=next((r for r in pool if r.summary.backbone != s.backbone), None),
            n_runs=len(pool), finished=bool(done),
        ))
    return out


def run_label(run: RunState, with_dataset: bool = True) -> str:
    s = run.summary
    parts = [s.dataset] if with_dataset else []
    return "/".join(parts + [s.backbone, s.strategy])

