"""Comparison tables (pandas), from the loaded grid. The CSVs the report writes come from here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from engine.store import RunSummary, selection_key
from report import metrics as M
from report.loading import GridData, RunData, norm_columns
from report.reference import reference

RESULT_COLUMNS = ["accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                  "recall_weighted", "f1_weighted"]
RUN_COLUMNS = (["dataset", "backbone", "strategy", "axes", "status"] + RESULT_COLUMNS
               + ["ece", "mean_confidence", "val_acc", "val_loss", "best_epoch", "epochs_run", "max_epochs", "early_stopped",
                  "train_seconds", "seconds_per_epoch", "image_size", "export_status", "onnx_accuracy",
                  "onnx_provider", "onnx_p50_ms_batch1", "onnx_p90_ms_batch1", "onnx_img_per_s", "onnx_size_mb",
                  "bench_host", "bench_load_avg", "run_id", "error"])


def latency_summary(export: dict | None) -> dict:
    """ONNX provider, p50 latency at batch 1 (or the smallest batch) and best throughput."""
    out = {"export_status": "", "onnx_accuracy": np.nan, "onnx_provider": "", "onnx_p50_ms_batch1": np.nan,
           "onnx_p90_ms_batch1": np.nan, "onnx_img_per_s": np.nan, "onnx_size_mb": np.nan, "bench_host": "",
           "bench_load_avg": np.nan}
    if not export:
        return out
    out["export_status"] = export.get("status", "")
    out["onnx_accuracy"] = _num(export.get("onnx_accuracy"))
    out["onnx_size_mb"] = _num(export.get("size_mb"))
    latency = export.get("latency") or {}
    if latency:
        provider, batches = next(iter(latency.items()))
        out["onnx_provider"] = provider
        sizes = sorted(batches, key=lambda b: int(b) if str(b).isdigit() else 10**9)
        if sizes:
            out["onnx_p50_ms_batch1"] = _num(batches[sizes[0]].get("p50_ms"))
            out["onnx_p90_ms_batch1"] = _num(batches[sizes[0]].get("p90_ms"))
            out["onnx_img_per_s"] = max((_num(v.get("img_per_s")) for v in batches.values()), default=np.nan)
    prov = export.get("provenance") if isinstance(export.get("provenance"), dict) else {}
    host = [str(prov[k]) for k in ("cpu", "gpu") if prov.get(k)]
    if prov.get("threads"):
        host.append(f"{prov['threads']} threads")
    out["bench_host"] = ", ".join(host)
    out["bench_load_avg"] = _num(prov.get("load_avg_1m"))
    return out


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return np.nan
    return value if math.isfinite(value) else np.nan


def run_row(run: RunData) -> dict:
    res = run.results or {}
    row: dict = {"dataset": run.dataset, "backbone": run.backbone, "strategy": run.strategy,
                 "axes": run.summary.axes_text if run.summary is not None else "", "status": run.status,
                 "run_id": run.run_id, "error": run.error if run.status != "done" else ""}
    for col in RESULT_COLUMNS:
        row[col] = _num(res.get(col))
    rel = M.reliability(run.probs, run.labels) if run.probs is not None and len(run.labels) else None
    row["ece"] = rel.ece if rel else np.nan
    row["mean_confidence"] = rel.mean_confidence if rel else np.nan
    # the kept epoch and its validation figures: the store's one definition (engine.store.summary)
    s = run.summary
    row["val_acc"] = _num(s.best_val_acc) if s is not None else np.nan
    row["val_loss"] = _num(s.best_val_loss) if s is not None else np.nan
    row["best_epoch"] = s.best_epoch if s is not None and s.best_epoch else np.nan
    epochs_run = res.get("epochs_run", len(run.metrics) if run.metrics is not None else np.nan)
    row["epochs_run"] = epochs_run
    row["max_epochs"] = run.config.train.epochs if run.config is not None else np.nan
    row["early_stopped"] = res.get("early_stopped", np.nan)
    row["train_seconds"] = _num(res.get("train_seconds"))
    if (not np.isfinite(row["train_seconds"])) and run.metrics is not None and "seconds" in run.metrics:
        row["train_seconds"] = float(run.metrics["seconds"].sum())
    n = _num(epochs_run)
    row["seconds_per_epoch"] = row["train_seconds"] / n if n and np.isfinite(n) else np.nan
    row["image_size"] = run.image_size or np.nan
    row.update(latency_summary(run.export))
    return row


def run_table(grid: GridData) -> pd.DataFrame:
    """One row per run of the grid, finished or not (status and error say which)."""
    df = pd.DataFrame([run_row(r) for r in grid.runs], columns=RUN_COLUMNS)
    return df


AXIS_METRICS = ("accuracy", "f1_macro", "val_acc", "train_seconds")


def axes_table(runs: list, dataset: str) -> pd.DataFrame:
    """axes_<dataset>.csv: for each axis and each of its values, the runs' test accuracy and F1, best-epoch val
    accuracy and training time (mean, and the best of them), finished runs only; empty without axes."""
    rows = []
    for run in runs:
        if run.summary is None or not run.summary.axes or not run.done:
            continue
        base = run_row(run)
        for key, value in run.summary.axes.items():
            from engine.store.summary import axis_value_text

            rows.append({"axis": key, "value": axis_value_text(value), "strategy": run.strategy,
                         "backbone": run.backbone, **{m: base[m] for m in AXIS_METRICS}})
    if not rows:
        return pd.DataFrame(columns=["axis", "value", "runs"])
    df = pd.DataFrame(rows)
    grouped = df.groupby(["axis", "value"], sort=False)
    out = grouped[list(AXIS_METRICS)].mean().add_prefix("mean_")
    out.insert(0, "runs", grouped.size())
    out["best_accuracy"] = grouped["accuracy"].max()
    return out.reset_index()


def benchmark(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The seed's benchmark_<dataset>.csv: every run on one dataset, best test accuracy first."""
    df = table[table["dataset"] == dataset].drop(columns=["dataset"])
    return df.sort_values(["accuracy", "backbone", "strategy"], ascending=[False, True, True],
                          na_position="last").reset_index(drop=True)


def select_best(table: pd.DataFrame, by: tuple[str, ...] = ("dataset", "backbone")) -> pd.DataFrame:
    """Per group, the finished run ranked first by ``engine.store.selection_key`` (``BEST_RULE``).

    ``val_acc``/``val_loss`` are the kept epoch's (``run_row``); the test set plays no part.
    Runs without validation numbers are ranked last.
    """
    done = table[table["status"] == "done"]
    if done.empty:
        return done.copy()
    keys = [selection_key(RunSummary(run_id=str(r.run_id), best_val_acc=_optional(r.val_acc),
                                     best_val_loss=_optional(r.val_loss))) for r in done.itertuples()]
    order = sorted(range(len(done)), key=keys.__getitem__)
    ranked = done.iloc[order]
    best = ranked.groupby(list(by), sort=False).head(1)
    return best.sort_values(list(by)).reset_index(drop=True)


def _optional(value) -> float | None:
    value = _num(value)
    return None if np.isnan(value) else value


def comparison(best: pd.DataFrame, metric: str, datasets: list[str], backbones: list[str]) -> pd.DataFrame:
    """dataset x backbone table of ``metric`` for the selected runs (the seed's final_*_comparison.csv)."""
    if best.empty:
        return pd.DataFrame(index=pd.Index(datasets, name="dataset"), columns=backbones, dtype=float)
    pivot = best.pivot(index="dataset", columns="backbone", values=metric)
    pivot = pivot.reindex(index=datasets, columns=backbones)
    pivot.index.name = "dataset"
    pivot.columns.name = None
    return pivot


def strategy_pivot(best: pd.DataFrame, datasets: list[str], backbones: list[str]) -> pd.DataFrame:
    """Which strategy was selected for each dataset x backbone cell."""
    if best.empty:
        return pd.DataFrame(index=pd.Index(datasets, name="dataset"), columns=backbones, dtype=object)
    pivot = best.pivot(index="dataset", columns="backbone", values="strategy").reindex(index=datasets,
                                                                                         columns=backbones)
    pivot.columns.name = None
    return pivot


def reference_deltas(best: pd.DataFrame) -> pd.DataFrame:
    """The selected runs against the seed's table: accuracy and F1, reference and difference (NaN = no reference)."""
    rows = []
    for _, r in best.iterrows():
        ref = reference(r["dataset"], r["backbone"])
        acc_ref, f1_ref = ref if ref else (np.nan, np.nan)
        rows.append({"dataset": r["dataset"], "backbone": r["backbone"], "strategy": r["strategy"],
                     "accuracy": r["accuracy"], "reference_accuracy": acc_ref,
                     "accuracy_delta": r["accuracy"] - acc_ref, "f1_macro": r["f1_macro"],
                     "reference_f1": f1_ref, "f1_delta": r["f1_macro"] - f1_ref,
                     "image_size": r["image_size"]})
    return pd.DataFrame(rows, columns=["dataset", "backbone", "strategy", "accuracy", "reference_accuracy",
                                       "accuracy_delta", "f1_macro", "reference_f1", "f1_delta", "image_size"])


def dataset_confused_pairs(runs: list[RunData]) -> pd.DataFrame:
    """Confused pairs summed over every finished model of one dataset, with how many models share each pair."""
    done = [r for r in runs if r.done and _counts(r) is not None]
    if not done:
        return M.confused_pairs(np.zeros((0, 0)), [])
    classes = done[0].classes
    same = [r for r in done if r.classes == classes]
    total = sum(_counts(r) for r in same)
    pairs = M.confused_pairs(total, classes)
    top_of = []
    for r in same:
        p = M.confused_pairs(_counts(r), classes)
        top_of.append(tuple(p.iloc[0][["class_a", "class_b"]]) if len(p) else None)
    pairs["models"] = len(same)
    pairs["top_pair_in_models"] = [sum(t == (a, b) for t in top_of) for a, b in zip(pairs["class_a"],
                                                                                   pairs["class_b"])]
    return pairs


def _counts(run: RunData) -> np.ndarray | None:
    if run.labels is not None and run.preds is not None:
        return M.confusion_counts(run.labels, run.preds, len(run.classes))
    cm = (run.results or {}).get("confusion_matrix")
    return np.asarray(cm, dtype=np.int64) if cm else None


def confusion_for(run: RunData) -> np.ndarray | None:
    """Row-normalised confusion of a finished run (from its predictions, or from its results' counts)."""
    if run.labels is not None and run.preds is not None:
        return M.row_normalised_confusion(run.labels, run.preds, len(run.classes))
    cm = (run.results or {}).get("confusion_matrix")
    return M.normalise_counts(np.asarray(cm)) if cm else None


def errors_for(run: RunData, k: int = 20) -> pd.DataFrame:
    """Top-k confident errors: recomputed from the test probabilities, else the results' list."""
    if run.probs is not None:
        return M.top_errors(run.probs, run.labels, k)
    rows = (run.results or {}).get("top_errors") or []
    return pd.DataFrame({"position": [e["index"] for e in rows][:k], "true": [e["true"] for e in rows][:k],
                         "pred": [e["pred"] for e in rows][:k], "confidence": [e["confidence"] for e in rows][:k]})


def relative_norm_change(run: RunData) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(epochs, {group: % change of L2 norm vs. before training}); epoch 0 = before training when known."""
    m = run.metrics
    if m is None or not norm_columns(m):
        return None
    epochs = m["epoch"].to_numpy(dtype=float)
    out = {}
    have_initial = all(c[5:] in run.initial_norms for c in norm_columns(m))
    if have_initial:
        epochs = np.concatenate([[0.0], epochs])
    for col in norm_columns(m):
        group = col[5:]
        values = m[col].to_numpy(dtype=float)
        if have_initial:
            values = np.concatenate([[float(run.initial_norms[group])], values])
        base = values[0]
        out[group] = (values / base - 1.0) * 100.0 if base else np.zeros_like(values)
    return epochs, out


def layer_movement(run: RunData) -> pd.Series | None:
    """% change of each layer group's L2 norm from before training to the last epoch (stem -> head order)."""
    data = relative_norm_change(run)
    if data is None:
        return None
    _, groups = data
    return pd.Series({g: float(v[-1]) for g, v in groups.items()})


MOVED_PCT = 1e-3  # a layer group whose norm changed by less than this (in %) counts as not trained


def layer_movement_table(runs: list[RunData]) -> pd.DataFrame:
    """Per run: how much the head and the backbone's layer groups moved (from the L2 norms of its metrics)."""
    rows = []
    for run in runs:
        movement = layer_movement(run)
        if movement is None or len(movement) < 2:
            continue
        head, body = movement.iloc[-1], movement.iloc[:-1]
        moved = body[body.abs() > MOVED_PCT]
        top = moved.abs().idxmax() if len(moved) else ""
        rows.append({"backbone": run.backbone, "strategy": run.strategy, "head_group": movement.index[-1],
                     "head_change_pct": head, "backbone_groups": len(body), "groups_moved": len(moved),
                     "most_moved_group": top, "most_moved_pct": float(moved[top]) if top else 0.0,
                     "first_moved_group": moved.index[0] if len(moved) else ""})
    return pd.DataFrame(rows, columns=["backbone", "strategy", "head_group", "head_change_pct", "backbone_groups",
                                       "groups_moved", "first_moved_group", "most_moved_group", "most_moved_pct"])
