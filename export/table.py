"""A grid's exports as one table (``GridDir.exports_csv``), and which runs of a grid to export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from engine.store import GridDir, RunDir, RunRecord, StoreError, atomic_write
from export.ort_session import short_name
from export.run_export import load_export
from export.selection import SELECTIONS, ExportError, grid_dir_of, grid_records, select_runs

__all__ = ["ExportError", "SELECTIONS", "grid_records", "grid_table", "latency_rows", "run_row", "select_runs",
           "write_grid_csv"]


def grid_table(grid_dir: str | Path | GridDir):
    """One row per exported run of the grid (pandas DataFrame): what the grid's exports table holds.

    Columns: run_id, dataset, backbone, strategy, status, accuracy and F1 (torch_/onnx_),
    parity, size, variants (``int8_size_mb``, ``int8_accuracy_delta``, ...), the deployable file with its
    preprocessing in the graph (``embedded_size_mb``, ``embedded_accuracy``, ``embedded_top1_agreement_trainer``
    / ``_onnx``, ``embedded_<p>_b<batch>_p50_ms/img_s``: uint8 images in, so its preprocessing is timed), then per provider
    (``cpu``, ``cuda``, ``trt``) and batch: ``<p>_b<batch>_p50_ms/p90_ms/p99_ms/img_s``, PyTorch
    ``torch_<device>_b<batch>_p50_ms/img_s``, ``<p>_b<batch>_vs_torch`` (ONNX/PyTorch img/s),
    ``pareto_<p>_b<smallest batch>`` (no other model of the dataset is both more accurate and
    faster), and provenance (cpu, gpu, onnxruntime, torch, threads).
    """
    import pandas as pd

    from export.pareto import pareto_front

    rows = []
    for record in grid_records(grid_dir_of(grid_dir)):
        row = run_row(record)
        if row:
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    smallest: dict[str, int] = {}  # provider -> smallest benchmarked batch
    for col in df.columns:
        m = _LATENCY_COL.match(col)
        if m:
            smallest[m["p"]] = min(int(m["b"]), smallest.get(m["p"], int(m["b"])))
    ok = df[df["status"] == "ok"]
    for provider, batch in smallest.items():
        flags = pd.Series(False, index=df.index)
        for _, group in ok.groupby("dataset"):
            points = list(zip(group["onnx_accuracy"], group[f"{provider}_b{batch}_p50_ms"]))
            flags.loc[group.index] = pareto_front(points)
        df[f"pareto_{provider}_b{batch}"] = flags
    return df


_LATENCY_COL = re.compile(r"^(?P<p>cpu|cuda|trt|[a-z]+)_b(?P<b>\d+)_p50_ms$")


def run_row(record: RunRecord) -> dict | None:
    """A run's row of the grid's exports table (None before its first export)."""
    summary = load_export(record.dir)
    if summary is None:
        return None
    detail = _detail(record.dir)
    s = record.summary
    row: dict[str, Any] = {"run_id": record.run_id, "dataset": s.dataset, "backbone": s.backbone,
                           "strategy": s.strategy, "status": summary.get("status"), "error": summary.get("error", "")}
    for k in ("torch_accuracy", "onnx_accuracy", "torch_f1_macro", "onnx_f1_macro", "parity_max_abs_diff",
              "top1_agreement", "size_mb"):
        row[k] = summary.get(k)
    for variant, v in detail.get("variants", {}).items():
        row.update({f"{variant}_size_mb": v.get("size_mb"), f"{variant}_accuracy": v.get("accuracy"),
                    f"{variant}_accuracy_delta": v.get("accuracy_delta"),
                    f"{variant}_top1_agreement_fp32": v.get("top1_agreement_fp32")})
        for provider, lat in v.get("latency", {}).items():
            for b, m in lat.items():
                row[f"{variant}_{short_name(provider)}_b{b}_p50_ms"] = m["p50_ms"]
                row[f"{variant}_{short_name(provider)}_b{b}_img_s"] = m["img_per_s"]
    embedded = detail.get("embedded") or {}
    if embedded:
        row.update({"embedded_size_mb": embedded.get("size_mb"), "embedded_accuracy": embedded.get("accuracy"),
                    "embedded_top1_agreement_trainer": embedded.get("top1_agreement_trainer"),
                    "embedded_top1_agreement_onnx": embedded.get("top1_agreement_onnx")})
        for provider, lat in embedded.get("latency", {}).items():
            for b, m in lat.items():
                row[f"embedded_{short_name(provider)}_b{b}_p50_ms"] = m["p50_ms"]
                row[f"embedded_{short_name(provider)}_b{b}_img_s"] = m["img_per_s"]
    for provider, lat in summary.get("latency", {}).items():
        p = short_name(provider)
        for b, m in lat.items():
            row.update({f"{p}_b{b}_p50_ms": m["p50_ms"], f"{p}_b{b}_p90_ms": m["p90_ms"],
                        f"{p}_b{b}_p99_ms": m["p99_ms"], f"{p}_b{b}_img_s": m["img_per_s"]})
    for device, lat in summary.get("torch_latency", {}).items():
        d = device.split(":")[0]
        for b, m in lat.items():
            row.update({f"torch_{d}_b{b}_p50_ms": m["p50_ms"], f"torch_{d}_b{b}_img_s": m["img_per_s"]})
    for provider, r in detail.get("ratio_onnx_over_torch", {}).items():
        for b, v in r.items():
            if b != "torch_device":
                row[f"{short_name(provider)}_b{b}_vs_torch"] = v
    fallbacks = [f"{short_name(p)}: {d.get('error', '')}" for p, d in detail.get("providers", {}).items()
                 if d.get("fallback")]
    row["provider_fallbacks"] = "; ".join(fallbacks)
    prov = summary.get("provenance", {})
    row.update({"cpu": prov.get("cpu"), "gpu": prov.get("gpu"), "onnxruntime": prov.get("onnxruntime"),
                "torch": prov.get("torch"), "threads": prov.get("threads")})
    return row


def write_grid_csv(grid_dir: str | Path | GridDir) -> Path:
    """Write the grid's exports table (``GridDir.exports_csv``) from every run's export, atomically; its path."""
    gdir = grid_dir_of(grid_dir)
    df = grid_table(gdir)
    atomic_write(gdir.exports_csv, lambda tmp: df.to_csv(tmp, index=False))
    return gdir.exports_csv


def _detail(rd: RunDir) -> dict:
    """The export's detail (everything measured), {} when absent or unreadable."""
    try:
        return rd.export.detail() or {}
    except StoreError:
        return {}


def latency_rows(run_dir: str | Path | RunDir) -> list[dict[str, Any]]:
    """A run's latency figures in long form: one row per engine (onnxruntime provider, variant, or
    PyTorch device) and batch, with p50/p90/p99 ms, images/s and ONNX/PyTorch images/s."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    detail = _detail(rd)
    if not detail:
        return []
    ratio = detail.get("ratio_onnx_over_torch", {})
    rows = []

    def add(engine: str, lat: dict, torch_lat: dict | None) -> None:
        for b, m in lat.items():
            vs = m["img_per_s"] / torch_lat[b]["img_per_s"] if torch_lat and b in torch_lat else None
            rows.append({"run_id": rd.run_id, "engine": engine, "batch": int(b), "p50_ms": m["p50_ms"],
                         "p90_ms": m["p90_ms"], "p99_ms": m["p99_ms"], "img_s": m["img_per_s"],
                         "runs": m.get("runs"), "vs_torch": round(vs, 3) if vs else None})

    torch_lat = detail.get("torch_latency", {})
    for provider, lat in detail.get("latency", {}).items():
        device = ratio.get(provider, {}).get("torch_device")
        add(f"onnx {short_name(provider)}", lat, torch_lat.get(device))
    for provider, lat in (detail.get("embedded") or {}).get("latency", {}).items():
        device = ratio.get(provider, {}).get("torch_device")  # uint8 images in: its preprocessing is timed too
        add(f"onnx+preprocess {short_name(provider)}", lat, torch_lat.get(device))
    for variant, v in detail.get("variants", {}).items():
        for provider, lat in v.get("latency", {}).items():
            device = ratio.get(provider, {}).get("torch_device")
            add(f"onnx {variant} {short_name(provider)}", lat, torch_lat.get(device))
    for device, lat in torch_lat.items():
        add(f"torch {device}", lat, None)
    return rows
