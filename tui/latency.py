"""Accuracy versus latency of the exported models, per dataset, with the Pareto front marked.

Reads each exported run's export summary (``ExportDir.summary()``, docs/CONTRACTS.md); the front comes from
``export.pareto.pareto_front`` (no torch in ``export.pareto``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from engine.store import StoreError
from export.pareto import pareto_front
from tui.store_watcher import RunState

PREFERRED_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class LatencyRow:
    """One exported run: its accuracies, batch-1 median latency and whether it is on its dataset's front."""

    key: str  # "<grid>/<run_id>"
    dataset: str
    status: str  # export status: "ok", "parity_failed", "failed", "unreadable"
    test_acc: float | None
    onnx_acc: float | None
    provider: str  # onnxruntime provider the latency was measured on ("" = none)
    p50_ms: float | None
    size_mb: float | None
    pareto: bool = False


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def batch1_p50(latency: object) -> tuple[str, float | None]:
    """``(provider, p50 ms)`` at batch 1: the CPU provider when it has batch 1, else the first provider that has."""
    if not isinstance(latency, dict):
        return "", None
    providers = sorted(latency, key=lambda p: p != PREFERRED_PROVIDER)  # stable: the rest keep their order
    for provider in providers:
        batches = latency[provider]
        b1 = batches.get("1") if isinstance(batches, dict) else None
        if isinstance(b1, dict) and _num(b1.get("p50_ms")) is not None:
            return str(provider), _num(b1["p50_ms"])
    return "", None


def read_row(run: RunState) -> LatencyRow | None:
    """The row of one run, None when it has not been exported."""
    try:
        obj = run.dir.export.summary()
    except StoreError:
        obj = {"status": "unreadable"}
    if obj is None:
        return None
    provider, p50 = batch1_p50(obj.get("latency"))
    return LatencyRow(key=run.key, dataset=run.summary.dataset, status=str(obj.get("status", "")),
                      test_acc=run.summary.test_accuracy, onnx_acc=_num(obj.get("onnx_accuracy")),
                      provider=provider, p50_ms=p50, size_mb=_num(obj.get("size_mb")))


def with_front(rows: Iterable[LatencyRow]) -> list[LatencyRow]:
    """Rows ordered by dataset then latency, ``pareto`` set per dataset (ONNX accuracy, else test accuracy,
    against latency; only exports with status "ok" take part)."""
    rows = sorted(rows, key=lambda r: (r.dataset, r.p50_ms is None, r.p50_ms or 0.0, r.key))
    out: list[LatencyRow] = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        group = [r for r in rows if r.dataset == dataset]
        points = [(r.onnx_acc if r.onnx_acc is not None else r.test_acc, r.p50_ms) if r.status == "ok" else None
                  for r in group]
        out += [replace(r, pareto=flag) for r, flag in zip(group, pareto_front(points))]
    return out


def latency_rows(runs: Iterable[RunState]) -> list[LatencyRow]:
    """Every exported run of ``runs`` (those the store watcher saw an export for), front marked."""
    rows = [read_row(r) for r in runs if r.export is not None]
    return with_front(r for r in rows if r is not None)
