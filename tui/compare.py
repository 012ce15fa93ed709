"""Side-by-side comparison of runs: metric rows, the best value per row, winners per dataset.

Pure functions over RunState (and results.json when loaded), so tests need no Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


def _res(name: str) -> Callable[[RunState, dict | None], object]:
    return lambda run, results: (results or {}).get(name)


def _exp(name: str) -> Callable[[RunState, dict | None], object]:
    return lambda run, results: getattr(run.export, name) if run.export is not None else None


METRICS: list[Metric] = [
    Metric("grid", "grid", lambda r, _: r.key.split("/")[0], str),
    Metric("status", "status", lambda r, _: r.status, str),
    Metric("epoch", "epochs", lambda r, _: fmt.epoch(r.summary.epoch, r.summary.epochs), str),
    Metric("best_val_acc", "best val acc %", lambda r, _: r.summary.best_val_acc, fmt.pct, "max"),
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
    return [m for m in METRICS if exported or not m.export]


def best_indices(values: list[object], better: str) -> set[int]:
    """Positions holding the best value of a row (ties all win); none when fewer than two values."""
    nums = [(i, v) for i, v in enumerate(values) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not better or len(nums) < 2:
        return set()
    target = max(v for _, v in nums) if better == "max" else min(v for _, v in nums)
    return {i for i, v in nums if v == target}


def score(run: RunState) -> tuple[float, str] | None:
    """What a winner is judged on: test accuracy when done, else best val accuracy."""
    if run.summary.test_accuracy is not None:
        return run.summary.test_accuracy, "test acc"
    if run.summary.best_val_acc is not None:
        return run.summary.best_val_acc, "best val acc"
    return None


@dataclass(frozen=True)
class Winners:
    """Best run, strategy and backbone of one dataset."""

    dataset: str
    run: RunState
    run_score: float
    basis: str  # what was compared: "test acc" or "best val acc"
    strategy: str
    strategy_score: float
    backbone: str
    backbone_score: float
    n_runs: int


def winners(runs: list[RunState]) -> list[Winners]:
    """Per dataset: the best run, and the strategy and backbone whose best run scores highest.

    Finished runs are judged on test accuracy; only when a dataset has none, on best val accuracy.
    """
    by_dataset: dict[str, list[RunState]] = {}
    for run in runs:
        if run.summary.dataset and score(run) is not None:
            by_dataset.setdefault(run.summary.dataset, []).append(run)
    out = []
    for dataset in sorted(by_dataset):
        group = by_dataset[dataset]
        done = [r for r in group if r.summary.test_accuracy is not None]
        pool = done or group
        basis = "test acc" if done else "best val acc"

        def value(r: RunState) -> float:
            return r.summary.test_accuracy if done else r.summary.best_val_acc  # type: ignore[return-value]

        best = max(pool, key=value)
        strategies: dict[str, float] = {}
        backbones: dict[str, float] = {}
        for r in pool:
            strategies[r.summary.strategy] = max(strategies.get(r.summary.strategy, 0.0), value(r))
            backbones[r.summary.backbone] = max(backbones.get(r.summary.backbone, 0.0), value(r))
        s_name = max(strategies, key=strategies.get)
        b_name = max(backbones, key=backbones.get)
        out.append(Winners(dataset, best, value(best), basis, s_name, strategies[s_name], b_name, backbones[b_name], len(pool)))
    return out


def run_label(run: RunState, with_dataset: bool = True) -> str:
    s = run.summary
    parts = [s.dataset] if with_dataset else []
    return "/".join(parts + [s.backbone, s.strategy])

