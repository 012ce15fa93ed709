"""What a tracker gets from one run: read from the run store, torch-free.

``RunHistory.read(run_dir)`` folds the run's event stream and files into plain values:
per-epoch scalars (losses, accuracies, the head's LR, every layer group's LR and weight
norm, speed), the initial norms, the resolved config as flat ``section.key`` parameters,
the test results and the export's figures as metrics, and the files worth keeping
(checkpoint-free: ONNX files, results, config, metrics table). A replayed epoch (a resumed
run) keeps its last record, as ``metrics.csv`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.errors import StoreError
from engine.store import GridDir, RunDir, load_run

# onnxruntime provider names -> short names, as the export table writes them (export.ort_session.SHORT)
_SHORT = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "trt"}
RESULT_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
               "f1_weighted")
FINAL_STATUSES = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    wall_time: float
    scalars: dict[str, float]  # "train/loss", "val/acc", "lr", "lr/<group>", "norm/<group>", ...


@dataclass
class RunHistory:
    """One run as a tracker sees it; names use "/" as the separator (TensorBoard's groups)."""

    run_id: str
    grid: str
    status: str
    started: float | None
    finished: float | None
    params: dict[str, Any]
    tags: dict[str, str]
    initial_norms: dict[str, float] = field(default_factory=dict)
    epochs: list[EpochRecord] = field(default_factory=list)
    results: dict[str, float] = field(default_factory=dict)  # "test/accuracy", "test/f1/<class>", "best_epoch"
    results_step: int = 0
    export: dict[str, float] = field(default_factory=dict)  # "onnx/accuracy", "onnx/cpu_b1_p50_ms", ...
    artifacts: dict[str, Path] = field(default_factory=dict)  # artifact path -> file

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def read(cls, rd: RunDir) -> RunHistory:
        record = load_run(rd)
        if record.problem:
            raise StoreError(f"run {rd.path} is unreadable: {record.problem}")
        s = record.summary
        config = rd.config_dict()
        history = cls(run_id=rd.run_id, grid=rd.grid_name, status=s.status, started=s.started_at,
                      finished=s.finished_at, params=flatten(config),
                      tags={"grid": rd.grid_name, "run_id": rd.run_id, "dataset": s.dataset, "backbone": s.backbone,
                            "strategy": s.strategy, "status": s.status, "device": s.device, "weights": s.weights})
        epochs: dict[int, EpochRecord] = {}
        for event in rd.events()[0]:
            if isinstance(event, ev.Started):
                history.initial_norms = {str(k): float(v) for k, v in event.initial_norms.items()}
            elif isinstance(event, ev.Epoch):
                epochs[event.epoch] = EpochRecord(event.epoch, event.ts, epoch_scalars(event))
            elif isinstance(event, ev.Finished):
                history.results_step = event.epochs_run
        history.epochs = [epochs[k] for k in sorted(epochs)]
        history.results = result_metrics(rd.results() or {})
        history.export = export_metrics(rd)
        history.artifacts = run_artifacts(rd)
        return history


def run_histories(gdir: GridDir, skipped: list[str]):
    """(run folder, its history) for each readable run of ``gdir``; an unreadable run is one line in ``skipped``
    and the others go on."""
    for rd in gdir.run_dirs():
        try:
            history = RunHistory.read(rd)
        except Exception as exc:
            skipped.append(f"{rd.run_id}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        yield rd, history


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{"data": {"image_size": 64}} -> {"data.image_size": 64}: the keys ``--set`` takes."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def epoch_scalars(event: ev.Epoch) -> dict[str, float]:
    out = {"train/loss": event.train_loss, "train/acc": event.train_acc, "val/loss": event.val_loss,
           "val/acc": event.val_acc, "lr": event.lr, "speed/img_per_s": event.img_per_s,
           "speed/epoch_seconds": event.seconds, "trainable_params": float(event.trainable),
           "stage": float(event.stage)}
    out.update({f"lr/{g}": float(v) for g, v in event.lrs.items()})
    out.update({f"norm/{g}": float(v) for g, v in event.group_norms.items()})
    return {k: float(v) for k, v in out.items() if v is not None}


def result_metrics(results: dict) -> dict[str, float]:
    out = {f"test/{k}": float(results[k]) for k in RESULT_KEYS if isinstance(results.get(k), (int, float))}
    for name, row in (results.get("per_class") or {}).items():
        if isinstance(row, dict) and isinstance(row.get("f1-score"), (int, float)):
            out[f"test/f1/{name}"] = float(row["f1-score"])
    for k in ("best_epoch", "epochs_run", "train_seconds"):
        if isinstance(results.get(k), (int, float)):
            out[k] = float(results[k])
    return out


def export_metrics(rd: RunDir) -> dict[str, float]:
    """The export summary's figures: accuracy both ways, size, parity, p50 latency and images/s."""
    try:
        summary = rd.export.summary() or {}
    except StoreError:
        return {}
    if summary.get("status") != "ok":
        return {}
    out = {f"onnx/{k}": float(summary[k]) for k in ("onnx_accuracy", "onnx_f1_macro", "parity_max_abs_diff",
                                                     "size_mb") if isinstance(summary.get(k), (int, float))}

    def latency(prefix: str, lat: dict) -> None:
        for provider, batches in (lat or {}).items():
            name = _SHORT.get(provider, provider.split(":")[0].lower())
            for batch, m in batches.items():
                out[f"{prefix}/{name}_b{batch}_p50_ms"] = float(m["p50_ms"])
                out[f"{prefix}/{name}_b{batch}_img_per_s"] = float(m["img_per_s"])

    latency("onnx", summary.get("latency"))
    latency("torch", summary.get("torch_latency"))
    embedded = summary.get("embedded") or {}
    for k in ("accuracy", "top1_agreement_trainer", "size_mb"):
        if isinstance(embedded.get(k), (int, float)):
            out[f"onnx_preprocess/{k}"] = float(embedded[k])
    latency("onnx_preprocess", embedded.get("latency"))
    return out


def run_artifacts(rd: RunDir) -> dict[str, Path]:
    """Files kept with the run: config, metrics, results, and the export folder (ONNX files, summary)."""
    out = {f"run/{p.name}": p for p in (rd.config_file, rd.metrics_file, rd.results_file) if p.is_file()}
    export = rd.export.path
    if export.is_dir():
        for p in sorted(export.iterdir()):
            if p.is_file():
                out[f"export/{p.name}"] = p
    return out


def report_files(gdir: GridDir) -> dict[str, Path]:
    """The grid's report folder (figures, tables, report.md/html), by name."""
    folder = gdir.report_dir
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}

